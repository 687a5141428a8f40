"""The IteRPrimE method: from one image and one expression to the mask of the object it refers to.

Owns every step of the paper and the segmenter that runs them (`segmenter.ReferringSegmenter`):
`gradcam` (BLIP ITM Grad-CAM), `primary_word` (spaCy parse, kept and primary words), `pwem` (primary
word emphasis), `refinement` (IGRS), the proposal backends (`proposals`: SAM v1; `sam2_proposals`:
SAM 2.1 / EdgeTAM's image parts, sharing the tracker's model; `mask2former_proposals`: the official
code's Mask2Former, all query masks) and `selection` (peak containment,
piece filter, score). It may import model loading (`..models`) and the root helpers (`..errors`,
`..image_io`, `..results`); never tracking, 3-D, ROS, the CLI, the benchmark or evaluation.
Importing this package imports nothing heavy; the modules import torch.
"""
