// Talks to the lighthmr_ros web API (see /docs). Arrays arrive as base64 little-endian typed arrays.

/** Wrap an {dtype, shape, data} array from the API in a Float32Array / Uint32Array. */
export function decodeArray(encoded) {
  const binary = atob(encoded.data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  const Typed = encoded.dtype === 'uint32' ? Uint32Array : Float32Array;
  return new Typed(bytes.buffer);
}

async function failure(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.detail) detail = typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  return new Error(detail);
}

export async function fetchHealth() {
  const response = await fetch('api/health');
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Faces are sent once per body model: cached by ETag, fetched again only when it changes.
const topologies = new Map();

export function fetchTopology(etag) {
  if (!topologies.has(etag)) {
    const pending = fetch('api/topology').then(async (response) => {
      if (!response.ok) throw await failure(response);
      const body = await response.json();
      return { ...body, faces: decodeArray(body.faces) };
    });
    pending.catch(() => topologies.delete(etag));
    topologies.set(etag, pending);
  }
  return topologies.get(etag);
}

/** POST one image; resolves to {result, topology, roundTripMs}. */
export async function predict(blob, { detThreshold, fovDeg, filename = 'frame.jpg' }) {
  const form = new FormData();
  form.append('image', blob, filename);
  form.append('det_threshold', String(detThreshold));
  form.append('fov_deg', String(fovDeg));
  const started = performance.now();
  const response = await fetch('api/predict', { method: 'POST', body: form });
  if (!response.ok) throw await failure(response);
  const result = await response.json();
  const topology = await fetchTopology(result.topology_etag);
  const roundTripMs = performance.now() - started;
  result.humans = result.humans.map((human) => ({
    ...human,
    joints: decodeArray(human.joints),
    joints_2d: decodeArray(human.joints_2d),
    vertices: human.vertices ? decodeArray(human.vertices) : null,
  }));
  return { result, topology, roundTripMs };
}
