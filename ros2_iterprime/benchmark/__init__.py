"""Where the time goes: every stage timed on full-size (random-weight) models, reported as ratios.

Owns the benchmark behind ``ros2_iterprime bench`` (`run`; `mask2former_stage`: the paper's proposal
stage with its FLOPs). It sits above the library: it may import
tracking, the grounding method, model loading and the root helpers; the CLI imports it, never the
other way round.
"""
