import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="more trials in the damaged-files battery")


# Seconds each of the longest test files takes on 2 cores (measured; only their order matters). The
# suite runs on 2 workers, each file on one (--dist loadfile) handed out in collection order: the
# longest go first, so that no long file starts last and leaves the other worker idle.
LONGEST = {"test_train.py": 220, "test_model.py": 190, "test_train_mode.py": 120, "test_incremental.py": 140,
           "test_train_distributed.py": 80, "test_finetune_evaluate.py": 110, "test_api.py": 100,
           "test_train_resume.py": 80, "test_walkthrough.py": 80, "test_train_multiprocess_cli.py": 70,
           "test_predict_genome.py": 70, "test_published_workflow.py": 65, "test_blocks.py": 65,
           "test_full_model.py": 60, "test_bench.py": 60, "test_cli_conventions.py": 60,
           "test_train_selection.py": 55, "test_pipeline_device_augment.py": 50, "test_seed_evaluation.py": 40}


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps within each file
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -LONGEST.get(item.path.name, 0))
