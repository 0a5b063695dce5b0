"""nnU-Net trainers for SCNAS (installed as ``nnunet_scnas.trainers``)."""
