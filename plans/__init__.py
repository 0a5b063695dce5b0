"""SCNAS plans for nnU-Net (installed as ``nnunet_scnas.plans``)."""
