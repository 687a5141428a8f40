"""Model loading: which checkpoints exist, where their files are, and how to build each model.

Owns the registry and safe loading of real checkpoints (`loading`: profiles, `load_pretrained`, the
missing-weights error, the ITM `[ENC]` id), the hub-cache layout and file checks (`checkpoints`),
fetching and exporting (`download`), the published config / processor / tokenizer files as data
(`published`), the tiny in-process test models (`tiny`), and the tracker checkpoints with their SAM 2
input geometry (`trackers`, `sam2_preprocess`), which the tracker and the SAM 2.1 proposal backend
share, and the Mask2Former checkpoints with the official test-time input (`mask2former`,
`mask2former_preprocess`). It may import only the root helpers (`..errors`); nothing here knows the method, ROS or the CLI.
"""
