"""The fusion pipeline's stages, one module each, in the order `pipeline.FaceFuser` runs them:
analysis, align, geometry, texture, refine, finish, paste (mesh_topology: Face Mesh index sets)."""
