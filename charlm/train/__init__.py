"""Training with Lightning: the LightningModule (the TBPTT step), bpc metrics, fault guards, resume, the run
folder and its record, atomic checkpoints, fine-tuning (init_from) and the loggers."""
