import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="more trials in the damaged-files battery")


# Seconds each of the longest test files takes on 2 cores (measured 2026-12-06 on a 2-core AMD EPYC Zen 3;
# only their order matters). The suite runs on 2 workers, each file on one (--dist loadfile) handed out
# in collection order: the longest go first, so that no long file starts last and leaves the other
# worker idle.
LONGEST = {"test_train.py": 360, "test_model.py": 280, "test_incremental.py": 240, "test_finetune_evaluate.py": 240,
           "test_train_mode.py": 235, "test_published_workflow.py": 180, "test_train_resume.py": 165,
           "test_train_distributed.py": 160, "test_full_model.py": 150, "test_blocks.py": 135,
           "test_train_multiprocess_cli.py": 125, "test_pipeline_device_augment.py": 115,
           "test_train_selection.py": 110, "test_walkthrough.py": 105, "test_predict.py": 90,
           "test_conversion.py": 85, "test_bench.py": 85, "test_variants.py": 75, "test_published.py": 65,
           "test_api.py": 60, "test_seed_evaluation.py": 50, "test_basenji_sad.py": 50,
           "test_cli_conventions.py": 50, "test_predict_genome.py": 45}


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps within each file
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -LONGEST.get(item.path.name, 0))
