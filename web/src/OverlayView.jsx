// The input image with the meshes rendered on top through the camera intrinsics K.
import { useEffect, useRef } from 'react';
import * as THREE from 'three';
import { addLights, clearGroup, opticalGroup, personMaterial, projectionFromK } from './scene.js';

export default function OverlayView({ frame, people, showMeshes }) {
  const canvasRef = useRef(null);
  const three = useRef(null);

  useEffect(() => {
    const renderer = new THREE.WebGLRenderer({
      canvas: canvasRef.current,
      alpha: true,
      antialias: true,
      preserveDrawingBuffer: true, // lets tests and screenshots read the pixels back
    });
    renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    const scene = new THREE.Scene();
    addLights(scene);
    const group = opticalGroup();
    scene.add(group);
    const camera = new THREE.Camera(); // at the origin, looking down -z: the photo's camera
    const state = { renderer, scene, group, camera, frame: null };
    state.render = () => {
      const canvas = canvasRef.current;
      const { clientWidth: w, clientHeight: h } = canvas;
      if (!w || !h || !state.frame) return;
      renderer.setSize(w, h, false);
      renderer.render(scene, camera);
    };
    const observer = new ResizeObserver(() => state.render());
    observer.observe(canvasRef.current);
    three.current = state;
    return () => {
      observer.disconnect();
      clearGroup(group);
      renderer.dispose();
      three.current = null;
    };
  }, []);

  useEffect(() => {
    const state = three.current;
    if (!state) return;
    state.frame = frame;
    clearGroup(state.group);
    if (frame) {
      state.camera.projectionMatrix.copy(projectionFromK(frame.K, frame.width, frame.height));
      state.camera.projectionMatrixInverse.copy(state.camera.projectionMatrix).invert();
      if (showMeshes) {
        for (const person of people) {
          state.group.add(new THREE.Mesh(person.geometry, personMaterial(person.color, 0.85)));
        }
      }
    }
    state.render();
  }, [frame, people, showMeshes]);

  const aspect = frame ? `${frame.width} / ${frame.height}` : '4 / 3';
  return (
    <div className="overlay" style={{ aspectRatio: aspect }}>
      {frame ? <img src={frame.url} alt="input" /> : <div className="placeholder">Upload or drop an image, or start the webcam</div>}
      <canvas ref={canvasRef} data-testid="overlay-canvas" />
    </div>
  );
}
