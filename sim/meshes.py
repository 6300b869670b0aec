"""Coarse visual meshes: a URDF whose visual OBJ meshes are decimated, for faster camera frames.

PyBullet's TinyRenderer transforms and rasterises every triangle of every visual mesh for every
frame; the KUKA iiwa's eight link meshes (14,750 triangles) cost ~1.8 ms of a 64x64 frame's
~3 ms, and at 64x64 pixels no one can see the detail. :func:`coarse_urdf` writes a copy of a
URDF whose visual meshes keep a fraction of their triangles (quadric-error decimation by
``fast_simplification``) with smooth vertex normals; collision meshes, inertia and every other
element are the original's (their relative paths made absolute), so physics is unchanged.

Meshes are decimated once per process and file (cached); the copy is written to a directory the
caller owns and may delete once PyBullet has loaded it (PyBullet reads meshes at load time).
"""

from __future__ import annotations

import functools
import os
import re

import numpy as np

VISUAL_MESH = re.compile(r"(<visual>(?:(?!</visual>).)*?<mesh\s+filename=\")([^\"]+\.obj)(\")", re.DOTALL)
MESH_PATH = re.compile(r"(filename=\")([^\"/][^\"]*)(\")")


def read_obj(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (F, 3) int64 (0-based) of a Wavefront OBJ file;
    polygons are fanned into triangles, normals and texture coordinates dropped."""
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("v "):
                vertices.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                corners = [int(token.split("/")[0]) for token in line.split()[1:]]
                if len(corners) < 3:
                    raise ValueError(f"{path}:{number}: a face needs 3 corners, got {len(corners)}")
                # OBJ indices are 1-based; negative ones count back from the last vertex read
                idx = [c - 1 if c > 0 else len(vertices) + c for c in corners]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(t) and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"{path}: a face refers to a vertex outside 1..{len(v)}")
    return v, t


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals (V, 3): the area-weighted sum of the normals of the faces around each vertex
    (a vertex on no face gets +z)."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    face = np.cross(b - a, c - a)  # length = twice the area: area weighting for free
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    normals[length[:, 0] == 0] = (0.0, 0.0, 1.0)
    return normals


@functools.lru_cache(maxsize=64)
def coarse_obj_text(path: str, keep: float) -> str:
    """OBJ text of the mesh at ``path`` decimated to about ``keep`` of its triangles, with
    smooth vertex normals (cached per process: the same input gives the same text)."""
    import fast_simplification

    if not 0 < keep <= 1:
        raise ValueError(f"coarse mesh: keep={keep!r} must be a fraction in (0, 1]")
    vertices, triangles = read_obj(path)
    if keep < 1 and len(triangles) > 16:
        vertices, triangles = fast_simplification.simplify(
            vertices.astype(np.float32), triangles.astype(np.int32), target_reduction=1.0 - keep
        )
        vertices, triangles = np.asarray(vertices, dtype=np.float64), np.asarray(triangles, dtype=np.int64)
    normals = vertex_normals(vertices, triangles)
    lines = [f"# {os.path.basename(path)} decimated to {len(triangles)} triangles (keep={keep})\n"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices]
    lines += [f"vn {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in normals]
    lines += [f"f {a}//{a} {b}//{b} {c}//{c}\n" for a, b, c in triangles + 1]
    return "".join(lines)


def coarse_urdf(urdf: str, keep: float, directory: str) -> str:
    """Write into ``directory`` a copy of the URDF file ``urdf`` whose visual OBJ meshes keep about
    ``keep`` of their triangles; returns the copy's path. Every other relative mesh path (the
    collision meshes) points at the original file, so the body behaves exactly as the original."""
    base = os.path.dirname(os.path.abspath(urdf))
    with open(urdf, encoding="utf-8") as f:
        text = f.read()
    written: dict[str, str] = {}

    def visual(match: re.Match[str]) -> str:
        source = os.path.normpath(os.path.join(base, match.group(2)))
        if source not in written:
            target = os.path.join(directory, f"visual_{len(written)}_{os.path.basename(source)}")
            with open(target, "w", encoding="utf-8") as out:
                out.write(coarse_obj_text(source, keep))
            written[source] = target
        return match.group(1) + written[source] + match.group(3)

    text = VISUAL_MESH.sub(visual, text)

    def absolute(match: re.Match[str]) -> str:
        return match.group(1) + os.path.join(base, match.group(2)) + match.group(3)

    text = MESH_PATH.sub(absolute, text)  # the pattern skips paths already absolute
    if not written:
        raise ValueError(f"coarse_urdf: {urdf} has no visual OBJ mesh to decimate")
    path = os.path.join(directory, "coarse_" + os.path.basename(urdf))
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    return path
