"""Training, bundling and offline evaluation of the starter models, behind `radpilot models
train|bundle|evaluate`. Runtime code never imports this package (an import contract in
pyproject.toml checks it); it uses the runtime's own loaders and decoders, so what is measured
here is what users run."""
