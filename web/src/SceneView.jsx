// The people in 3D, in the camera frame, with the camera frustum and orbit controls.
import { useEffect, useRef } from 'react';
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { addLights, clearGroup, opticalGroup, personMaterial } from './scene.js';

/** Frustum lines and the photo as a backdrop at `depth` metres, in optical coordinates. */
function cameraDecor(frame, depth, texture) {
  const [fx, cx, fy, cy] = [frame.K[0][0], frame.K[0][2], frame.K[1][1], frame.K[1][2]];
  const corner = (u, v) => new THREE.Vector3(((u - cx) / fx) * depth, ((v - cy) / fy) * depth, depth);
  const corners = [corner(0, 0), corner(frame.width, 0), corner(frame.width, frame.height), corner(0, frame.height)];
  const points = [];
  for (let i = 0; i < 4; i += 1) points.push(new THREE.Vector3(), corners[i], corners[i], corners[(i + 1) % 4]);
  const lines = new THREE.LineSegments(
    new THREE.BufferGeometry().setFromPoints(points),
    new THREE.LineBasicMaterial({ color: 0x888888 }),
  );
  const plane = new THREE.BufferGeometry().setFromPoints(corners);
  plane.setIndex([0, 2, 1, 0, 3, 2]);
  plane.setAttribute('uv', new THREE.Float32BufferAttribute([0, 1, 1, 1, 1, 0, 0, 0], 2));
  const backdrop = new THREE.Mesh(
    plane,
    new THREE.MeshBasicMaterial({ map: texture, side: THREE.DoubleSide, transparent: true, opacity: 0.6 }),
  );
  return [lines, backdrop];
}

export default function SceneView({ frame, people, resetKey }) {
  const canvasRef = useRef(null);
  const three = useRef(null);

  useEffect(() => {
    const canvas = canvasRef.current;
    const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    renderer.setClearColor(0x1d2129);
    const scene = new THREE.Scene();
    addLights(scene);
    const group = opticalGroup();
    const decor = opticalGroup();
    scene.add(group, decor, new THREE.AxesHelper(0.3));
    const camera = new THREE.PerspectiveCamera(50, 1, 0.01, 500);
    camera.position.set(1.5, 1.2, 1.5);
    const controls = new OrbitControls(camera, canvas);
    controls.target.set(0, 0, -3);
    const state = { renderer, scene, group, decor, camera, controls, texture: null };
    state.render = () => {
      const { clientWidth: w, clientHeight: h } = canvas;
      if (!w || !h) return;
      renderer.setSize(w, h, false);
      camera.aspect = w / h;
      camera.updateProjectionMatrix();
      renderer.render(scene, camera);
    };
    controls.addEventListener('change', state.render);
    controls.update();
    const observer = new ResizeObserver(() => state.render());
    observer.observe(canvas);
    three.current = state;
    return () => {
      observer.disconnect();
      controls.dispose();
      clearGroup(group);
      clearGroup(decor);
      if (state.texture) state.texture.dispose();
      renderer.dispose();
      three.current = null;
    };
  }, []);

  // People and backdrop follow each result.
  useEffect(() => {
    const state = three.current;
    if (!state) return;
    clearGroup(state.group);
    for (const person of people) state.group.add(new THREE.Mesh(person.geometry, personMaterial(person.color)));
    for (const child of [...state.decor.children]) {
      state.decor.remove(child);
      child.geometry.dispose();
      child.material.dispose();
    }
    if (state.texture) state.texture.dispose();
    state.texture = null;
    if (frame) {
      const depths = people.map((p) => p.human.translation[2]).filter((z) => Number.isFinite(z) && z > 0);
      const depth = depths.length ? Math.max(...depths) + 1.5 : 4;
      const texture = new THREE.TextureLoader().load(frame.url, state.render);
      texture.colorSpace = THREE.SRGBColorSpace;
      state.texture = texture;
      state.decor.add(...cameraDecor(frame, depth, texture));
      // A floor grid under the lowest vertex (optical y points down), when there are people.
      if (people.length) {
        let floor = -Infinity;
        for (const person of people) {
          person.geometry.computeBoundingBox();
          floor = Math.max(floor, person.geometry.boundingBox.max.y);
        }
        const grid = new THREE.GridHelper(2 * depth, Math.round(2 * depth), 0x555a66, 0x33373f);
        grid.position.set(0, floor, depth / 2);
        state.decor.add(grid);
      }
    }
    state.render();
  }, [frame, people]);

  // Aim at the people on the first result and when asked; otherwise keep the user's view.
  useEffect(() => {
    const state = three.current;
    if (!state || !people.length) return;
    const box = new THREE.Box3();
    for (const person of people) {
      person.geometry.computeBoundingBox();
      box.union(person.geometry.boundingBox);
    }
    const center = box.getCenter(new THREE.Vector3()).applyEuler(new THREE.Euler(Math.PI, 0, 0));
    const size = Math.max(box.getSize(new THREE.Vector3()).length(), 1);
    state.controls.target.copy(center);
    state.camera.position.copy(center).add(new THREE.Vector3(1.6 * size, 0.9 * size, 1.2 * size));
    state.controls.update();
    state.render();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [resetKey]);

  return <canvas ref={canvasRef} className="scene" data-testid="scene-canvas" />;
}
