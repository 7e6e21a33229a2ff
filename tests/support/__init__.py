"""What tests share across files, written once (a module per kind of help):

- `deliveries`: a Lambda context, deliveries in threads held at gates, a delivery whose process dies at a port;
- `cli`: the one-line error of `lnn`, as tests check it;
- `arrays`: an .npz's bytes, the forged .npz files of the memory guard rails, Gaussian blobs;
- `uploads`: a run started by an upload (parameters.json, data, the S3 event);
- `emulator`: a moto server with the stack deployed by the CDK CLI;
- `web`: `lnn serve`'s app served in a thread;
- `runs`: run parameters that several files train with;
- `sweeps`: the sweep tests' trial parameters, a recorded sweep, `lnn sweep start` on the `aws` backend.
"""
