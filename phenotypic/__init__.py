"""Pheno-CA: Cell Painting profiles and images, RDKit chemistry, IBP pretraining, Pheno-CA tasks and
neural scaling laws. The console command is ``phenotypic``."""
