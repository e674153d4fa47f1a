// three.js helpers shared by the overlay and the 3D view.
// The API speaks the camera optical frame (x right, y down, z forward); three.js cameras look
// down -z with y up, so every person is placed in a group turned 180 degrees about x.
import * as THREE from 'three';

export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7'];

export function colorOf(index) {
  return PALETTE[index % PALETTE.length];
}

/** A group whose children may be given in camera optical coordinates. */
export function opticalGroup() {
  const group = new THREE.Group();
  group.rotation.x = Math.PI;
  return group;
}

/**
 * OpenGL projection matrix for pinhole intrinsics K of a width x height image: rendering with it
 * puts each vertex exactly where K projects it (u = fx x / z + cx, v = fy y / z + cy).
 */
export function projectionFromK(K, width, height, near = 0.05, far = 200) {
  const [fx, cx, fy, cy] = [K[0][0], K[0][2], K[1][1], K[1][2]];
  const m = new THREE.Matrix4();
  m.set(
    (2 * fx) / width, 0, 1 - (2 * cx) / width, 0,
    0, (2 * fy) / height, (2 * cy) / height - 1, 0,
    0, 0, -(far + near) / (far - near), (-2 * far * near) / (far - near),
    0, 0, -1, 0,
  );
  return m;
}

/** One BufferGeometry per person; the index (faces) is shared by everybody. */
export function buildGeometries(humans, faces) {
  const index = new THREE.BufferAttribute(faces, 1);
  return humans
    .filter((human) => human.vertices)
    .map((human, i) => {
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute('position', new THREE.BufferAttribute(human.vertices, 3));
      geometry.setIndex(index);
      geometry.computeVertexNormals();
      geometry.computeBoundingSphere();
      return { id: human.id, color: colorOf(i), geometry, human };
    });
}

export function personMaterial(color, opacity = 1) {
  return new THREE.MeshPhongMaterial({
    color,
    shininess: 20,
    side: THREE.DoubleSide,
    transparent: opacity < 1,
    opacity,
  });
}

export function addLights(scene) {
  scene.add(new THREE.HemisphereLight(0xffffff, 0x444455, 1.6));
  const key = new THREE.DirectionalLight(0xffffff, 1.8);
  key.position.set(0.3, 0.6, 1);
  scene.add(key);
}

/** Remove and dispose a group's children (materials; geometries belong to the caller). */
export function clearGroup(group) {
  for (const child of [...group.children]) {
    group.remove(child);
    if (child.material) child.material.dispose();
  }
}
