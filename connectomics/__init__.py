"""STAR: neuron segmentation of electron-microscopy volumes with recurrent (gamma-Net) and U-Net models.

Volume IO over zarr/OME-Zarr/HDF5/TIFF, an EM simulator, affinity targets and models, chunked inference,
watershed/agglomeration and ARAND/VOI metrics. The console command is ``connectomics``.
"""
