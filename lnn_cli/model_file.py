"""`lnn predict --model FILE.npz`: predict on this machine from a model file, without a stack (`lnn local` and
`make demo` leave model.npz in their --out). The same `Model.answer` as a run's model, shown the same way."""

from pathlib import Path

from rich.console import Console

from lnn_cli.predict_command import predict_with
from lnn_core.errors import LnnInputError
from lnn_core.predictor import Model


def command_predict_model(args, console: Console) -> int:
    if args.run_id and args.model:
        raise LnnInputError(f"give a run id ({args.run_id}) or --model FILE.npz, not both")
    if not args.model:
        raise LnnInputError(
            "give the model to predict with: a RUN_ID of the stack (`lnn runs` lists them) or "
            "--model FILE.npz (`lnn local` writes one to its --out, default out/local/model.npz)"
        )
    if args.remote:
        raise LnnInputError(
            "--remote asks the stack's PredictLambda about a run; a --model file is predicted on this "
            "machine: leave out --remote"
        )
    path = Path(args.model)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LnnInputError(
            f"--model {path} does not exist (`lnn local` writes model.npz to its --out, default out/local)"
        ) from None
    except IsADirectoryError:
        raise LnnInputError(f"--model {path} is a directory; give the model.npz in it") from None
    except OSError as error:
        raise LnnInputError(f"--model {path} cannot be read ({error.strerror})") from None
    model = Model.from_npz(data, key=str(path))
    return predict_with(args, model.describe(), model.answer, console)
