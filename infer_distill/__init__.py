"""infer_distill: the producer of INFER-distilled datasets."""
