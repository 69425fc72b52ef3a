"""Index sets of MediaPipe's 478-point face mesh, generated from mediapipe's
face_mesh_connections (Apache-2.0) so that stages need no mediapipe import.

Polygons (`*_LOOP`) are ordered around the region; `*_POINTS` are unordered sets.
"""

from __future__ import annotations

FACE_OVAL_LOOP: tuple[int, ...] = (
    10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389, 251, 284, 332, 297, 338,
)

LIPS_POINTS: tuple[int, ...] = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
    191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405,
    409, 415,
)

INNER_LIPS_LOOP: tuple[int, ...] = (
    13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311,
    312,
)

OUTER_LIPS_LOOP: tuple[int, ...] = (
    0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269,
    267,
)

LEFT_EYE_LOOP: tuple[int, ...] = (
    249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 263,
)

RIGHT_EYE_LOOP: tuple[int, ...] = (
    7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163,
)

LEFT_BROW_POINTS: tuple[int, ...] = (
    276, 282, 283, 285, 293, 295, 296, 300, 334, 336,
)

RIGHT_BROW_POINTS: tuple[int, ...] = (
    46, 52, 53, 55, 63, 65, 66, 70, 105, 107,
)

LEFT_IRIS_POINTS: tuple[int, ...] = (
    474, 475, 476, 477,
)

RIGHT_IRIS_POINTS: tuple[int, ...] = (
    469, 470, 471, 472,
)

NOSE_POINTS: tuple[int, ...] = (
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326,
    327, 344, 440,
)
