import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="more trials in the damaged-files battery")


# Seconds each of the longest test files takes on 2 cores (measured 2026-12-07 on a 2-core AMD EPYC Zen 3;
# only their order matters). The suite runs on 2 workers, each file on one (--dist loadfile) handed out
# in collection order: the longest go first, so that no long file starts last and leaves the other
# worker idle.
LONGEST = {"test_train.py": 225, "test_train_mode.py": 185, "test_model.py": 175, "test_finetune_evaluate.py": 175,
           "test_blocks.py": 145, "test_incremental.py": 140, "test_full_model.py": 125, "test_train_selection.py": 110,
           "test_published_workflow.py": 115, "test_train_multiprocess_cli.py": 85, "test_walkthrough.py": 75,
           "test_bench.py": 75, "test_conversion.py": 70, "test_variants.py": 70, "test_train_resume.py": 60,
           "test_published.py": 55, "test_train_distributed.py": 55, "test_pipeline_device_augment.py": 50,
           "test_api.py": 45, "test_predict_genome.py": 45, "test_predict.py": 40}


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps within each file
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -LONGEST.get(item.path.name, 0))
