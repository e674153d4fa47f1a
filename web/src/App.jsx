// The demo page: pick an image or stream the webcam, see the people as meshes in 2D and 3D.
import { useCallback, useEffect, useRef, useState } from 'react';
import { fetchHealth, predict } from './api.js';
import { describeFov, FovStabiliser, fovField } from './fovEstimate.js';
import OverlayView from './OverlayView.jsx';
import SceneView from './SceneView.jsx';
import { buildGeometries } from './scene.js';

function useHealth() {
  const [health, setHealth] = useState(null);
  useEffect(() => {
    let alive = true;
    let timer;
    const poll = async () => {
      try {
        const body = await fetchHealth();
        if (alive) setHealth(body);
        if (alive && body.status === 'loading') timer = setTimeout(poll, 2000);
      } catch (error) {
        if (alive) setHealth({ status: 'error', message: String(error.message || error) });
      }
    };
    poll();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);
  return health;
}

// Initial settings may come from the address (?threshold=0.3&fov=70&fps=4), else from the server.
function fromAddress(name, low, high) {
  const raw = new URLSearchParams(window.location.search).get(name);
  const value = Number(raw);
  return raw !== null && Number.isFinite(value) && value >= low && value <= high ? value : null;
}

function initial(name, fallback, low, high) {
  return fromAddress(name, low, high) ?? fallback;
}

export default function App() {
  const health = useHealth();
  const [detThreshold, setDetThreshold] = useState(() => initial('threshold', 0.5, 0.01, 0.99));
  const [fovDeg, setFovDeg] = useState(() => initial('fov', 60, 20, 120));
  // auto: the model's own field of view where it estimates one (the Anny teacher), else the server's fallback.
  const [fovAuto, setFovAuto] = useState(() => fromAddress('fov', 20, 120) === null);
  const [fps, setFps] = useState(() => initial('fps', 2, 0.5, 10));
  const [showMeshes, setShowMeshes] = useState(true);
  const [view, setView] = useState({ frame: null, people: [], timing: null, roundTripMs: null, fovText: '' });
  const [status, setStatus] = useState({ busy: false, error: null });
  const [resetKey, setResetKey] = useState(0);
  const [webcam, setWebcam] = useState(null); // {stream} while streaming
  const [webcamFrames, setWebcamFrames] = useState(0);
  // Server defaults (lighthmr serve --det-threshold/--fov) unless the address set them.
  useEffect(() => {
    if (!health || health.status !== 'ok') return;
    if (fromAddress('threshold', 0.01, 0.99) === null) setDetThreshold(health.det_threshold);
    if (fromAddress('fov', 20, 120) === null) {
      setFovDeg(health.fov_deg);
      setFovAuto(Boolean(health.fov_auto));
    }
  }, [health]);
  const lastImage = useRef(null); // {blob, name} of the uploaded image, re-run when settings change
  const sentFov = fovAuto ? 'auto' : fovDeg;
  const settings = useRef({ detThreshold, fovDeg: sentFov, fovAuto });
  settings.current = { detThreshold, fovDeg: sentFov, fovAuto };
  const inFlight = useRef(false);
  const videoRef = useRef(null);
  // Webcam with auto FOV: one field of view per stream, as the ROS node keeps per camera (fovEstimate.js);
  // the number of frames in its median comes from the server (/api/health fov_estimate_frames).
  const liveFov = useRef(null);
  useEffect(() => {
    if (!health || health.status !== 'ok' || !health.fov_estimate_frames) return;
    if (liveFov.current) liveFov.current.settleFrames = health.fov_estimate_frames;
    else liveFov.current = new FovStabiliser(health.fov_estimate_frames);
  }, [health]);
  useEffect(() => {
    if (liveFov.current) liveFov.current.reset(); // auto FOV turned off or on: start again
  }, [fovAuto]);

  // overrides: {fovDeg, stable} of a webcam frame sent with its stream's field of view.
  const run = useCallback(async (blob, filename, overrides = {}) => {
    inFlight.current = true;
    setStatus({ busy: true, error: null });
    try {
      const sent = { ...settings.current, ...(overrides.fovDeg === undefined ? {} : { fovDeg: overrides.fovDeg }) };
      const { result, topology, roundTripMs } = await predict(blob, { ...sent, filename });
      const url = URL.createObjectURL(blob);
      const people = buildGeometries(result.humans, topology.faces);
      setView((previous) => {
        if (previous.frame) URL.revokeObjectURL(previous.frame.url);
        previous.people.forEach((person) => person.geometry.dispose());
        if (!previous.frame || (!previous.people.length && people.length)) setResetKey((k) => k + 1);
        return {
          frame: { url, width: result.width, height: result.height, K: result.K },
          people,
          timing: result.timing,
          roundTripMs,
          fovText: describeFov(result, overrides.stable),
        };
      });
      setStatus({ busy: false, error: null });
      return result;
    } catch (error) {
      setStatus({ busy: false, error: String(error.message || error) });
      return null;
    } finally {
      inFlight.current = false;
    }
  }, []);

  const takeFile = (file) => {
    if (!file || webcam) return;
    lastImage.current = { blob: file, name: file.name };
    run(file, file.name);
  };
  const onFile = (event) => takeFile(event.target.files && event.target.files[0]);
  const onDrop = (event) => {
    event.preventDefault();
    takeFile(event.dataTransfer.files && event.dataTransfer.files[0]);
  };

  // Settings changed on a still image: predict again (debounced).
  useEffect(() => {
    if (webcam || !lastImage.current) return undefined;
    const timer = setTimeout(() => run(lastImage.current.blob, lastImage.current.name), 250);
    return () => clearTimeout(timer);
  }, [detThreshold, fovDeg, fovAuto, webcam, run]);

  const startWebcam = async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setStatus({ busy: false, error: 'This browser gives no camera access here (use http://localhost or https).' });
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
      setWebcamFrames(0);
      if (liveFov.current) liveFov.current.reset(); // a (re)started webcam: its field of view anew
      setWebcam({ stream });
    } catch (error) {
      setStatus({ busy: false, error: `Camera unavailable: ${error.message || error}` });
    }
  };

  const stopWebcam = () => {
    if (webcam) webcam.stream.getTracks().forEach((track) => track.stop());
    setWebcam(null);
  };

  // Stream: grab a frame every 1/fps seconds, never more than one request in flight.
  useEffect(() => {
    if (!webcam) return undefined;
    const video = videoRef.current;
    video.srcObject = webcam.stream;
    video.play().catch(() => {});
    const grab = document.createElement('canvas');
    const timer = setInterval(() => {
      if (inFlight.current || !video.videoWidth) return;
      const { videoWidth: width, videoHeight: height } = video;
      grab.width = width;
      grab.height = height;
      grab.getContext('2d').drawImage(video, 0, 0);
      inFlight.current = true;
      // auto FOV: the stream's median so far (a new video size starts it again), "auto" before the first one
      const live = settings.current.fovAuto ? liveFov.current : null;
      const stable = live ? live.current(width, height) : null;
      const epoch = live ? live.epoch : 0;
      grab.toBlob(async (blob) => {
        if (!blob) {
          inFlight.current = false;
          return;
        }
        const result = await run(blob, 'webcam.jpg', stable ? { fovDeg: fovField(stable), stable } : {});
        if (!result) return;
        setWebcamFrames((n) => n + 1);
        // this frame's own estimate joins the median unless reset since it was sent
        if (live && live.epoch === epoch) {
          live.update(result.width, result.height, result.fov_estimate_deg, result.humans.length);
        }
      }, 'image/jpeg', 0.85);
    }, 1000 / fps);
    return () => clearInterval(timer);
  }, [webcam, fps, run]);

  useEffect(() => () => webcam && webcam.stream.getTracks().forEach((track) => track.stop()), [webcam]);

  const count = view.frame ? view.people.length : null;
  return (
    <div className="app">
      <header>
        <h1>lighthmr</h1>
        <span className="health" data-testid="health">
          {health
            ? health.status === 'ok'
              ? `${health.body_model} on ${health.device}`
              : `${health.status}${health.message ? `: ${health.message}` : ''}`
            : 'connecting...'}
        </span>
      </header>
      {health && health.notice ? (
        <p className="notice" role="alert" data-testid="model-notice">
          {health.notice.split('`').map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part))}
        </p>
      ) : null}
      <section className="controls">
        <label className="button">
          Upload image
          <input type="file" accept="image/jpeg,image/png,image/webp,image/bmp" onChange={onFile} data-testid="file-input" disabled={!!webcam} />
        </label>
        {webcam ? (
          <button type="button" onClick={stopWebcam}>Stop webcam</button>
        ) : (
          <button type="button" onClick={startWebcam}>Start webcam</button>
        )}
        <label>
          Rate {fps} fps
          <input type="range" min="0.5" max="10" step="0.5" value={fps} onChange={(e) => setFps(Number(e.target.value))} />
        </label>
        <label>
          Threshold {detThreshold.toFixed(2)}
          <input type="range" min="0.01" max="0.99" step="0.01" value={detThreshold} onChange={(e) => setDetThreshold(Number(e.target.value))} data-testid="threshold" />
        </label>
        <label>
          FOV {fovAuto ? 'auto' : <>{fovDeg}&deg;</>}
          <input type="range" min="20" max="120" step="1" value={fovDeg} onChange={(e) => { setFovAuto(false); setFovDeg(Number(e.target.value)); }} data-testid="fov" />
        </label>
        <label title="the model's own field-of-view estimate where it has one (Multi-HMR-Anny; webcam: the median of the first frames with people, then fixed), else the server's fallback">
          <input type="checkbox" checked={fovAuto} onChange={(e) => setFovAuto(e.target.checked)} data-testid="fov-auto" /> auto FOV
        </label>
        <label>
          <input type="checkbox" checked={showMeshes} onChange={(e) => setShowMeshes(e.target.checked)} /> overlay
        </label>
        <button type="button" onClick={() => setResetKey((k) => k + 1)} disabled={!view.people.length}>Reset 3D view</button>
      </section>
      <section className="stats">
        <span>
          People: <b data-testid="people-count">{count === null ? '-' : count}</b>
        </span>
        <span>
          Latency: <b data-testid="latency">{view.roundTripMs === null ? '-' : `${view.roundTripMs.toFixed(0)} ms`}</b>
          {view.timing ? ` (model ${view.timing.inference_ms.toFixed(0)} ms)` : ''}
        </span>
        {webcam || webcamFrames ? (
          <span>
            Webcam frames: <b data-testid="webcam-frames">{webcamFrames}</b>
          </span>
        ) : null}
        {view.fovText ? <span data-testid="fov-state">{view.fovText}</span> : null}
        <span data-testid="status" className={status.error ? 'error' : ''}>
          {status.error || (status.busy ? 'predicting...' : view.frame ? 'done' : '')}
        </span>
      </section>
      <main>
        <div className="panel" onDragOver={(event) => event.preventDefault()} onDrop={onDrop}>
          <OverlayView frame={view.frame} people={view.people} showMeshes={showMeshes} />
          <video ref={videoRef} muted playsInline className="hidden" />
        </div>
        <div className="panel">
          <SceneView frame={view.frame} people={view.people} resetKey={resetKey} />
        </div>
      </main>
      <ul className="people">
        {view.people.map((person) => (
          <li key={person.id} style={{ borderColor: person.color }}>
            #{person.id} score {person.human.score.toFixed(2)}, {person.human.translation[2].toFixed(2)} m away
          </li>
        ))}
      </ul>
      <footer>
        API docs at <a href="docs">/docs</a>. Meshes are in the camera frame: x right, y down, z forward.
      </footer>
    </div>
  );
}
