"""Real run folders for the report tests, made with the engine and the oracle model."""

from __future__ import annotations

from pathlib import Path

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.dataset import discover_dataset
from nfbench.io.volume import load_volume
from nfbench.lesions import instance_map
from nfbench.runner.evaluate import EvaluationPlan, evaluate
from tests.oracle_models import OracleModel


class Oracle(OracleModel):
    """Perfect on the lesions it is clicked on; ``miss`` drops every other lesion it is asked for."""

    def __init__(self, dataset, name: str = "oracle", miss: bool = False) -> None:
        super().__init__(None, name)
        self.labels = {c.image: c.label for c in dataset.cases}
        self.miss = miss

    def start(self, image, *, seed=0):
        instances = instance_map(load_volume(self.labels[image.path]).data)
        if self.miss:
            instances = instances * (instances % 2 == 1)
        self.instances = instances
        return super().start(image, seed=seed)


def make_run(data: Path, out: Path) -> Path:
    dataset = discover_dataset(data)
    plan = EvaluationPlan(
        data=data, test_sets=("imagesTs_1", "imagesTs_2"), models=("oracle", "half"),
        scenarios=(scenario_from_options("lesion-corrective", lesions=5), scenario_from_options("global-corrective", interactions=8)),
    )
    evaluate(plan, out, models={"oracle": Oracle(dataset), "half": Oracle(dataset, "half", miss=True)}, quiet=True)
    return out
