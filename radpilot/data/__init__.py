"""Reading the development data (`../shared/data/cxr`): one module that evaluations and
training share."""
