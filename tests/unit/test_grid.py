"""Grid expansion: hparam forms, order, run filters, placeholders, sugar, cluster-field overrides."""
import pytest

from toolbox.core import syntax as sugar
from toolbox.core.config import load_config
from toolbox.core.grid import expand
from toolbox.errors import ConfigError


def grid(project, launch, models=None, datasets=None):
    project.launch_yaml(launch)
    return expand(load_config("."), models, datasets)


def hp(cells):
    return [dict(c.hparams) for c in cells]


def test_scalar_list_and_group_forms(project):
    cells = grid(project, """\
        model:
          m:
            command: run
            hparam:
              opt: adam
              lr: [0.1, 0.01]
              train:
                paper: {_lr_s: linear, _warm: 0}
                scale: {_lr_s: constant, _warm: 500}
    """).cells
    assert hp(cells) == [
        {"opt": "adam", "lr": "0.1", "train": "paper", "_lr_s": "linear", "_warm": "0"},
        {"opt": "adam", "lr": "0.1", "train": "scale", "_lr_s": "constant", "_warm": "500"},
        {"opt": "adam", "lr": "0.01", "train": "paper", "_lr_s": "linear", "_warm": "0"},
        {"opt": "adam", "lr": "0.01", "train": "scale", "_lr_s": "constant", "_warm": "500"},
    ]
    # group inner keys come right after the group key
    assert [k for k, _ in cells[0].hparams] == ["opt", "lr", "train", "_lr_s", "_warm"]


def test_order_datasets_outer_models_inner_last_key_fastest(project):
    cells = grid(project, """\
        model:
          average: {command: avg <fn>}
          median: {command: med <fn>}
        dataset:
          data1: {hparam: {_fn: data/1.txt, seed: [1, 2]}}
          data2: {hparam: {_fn: data/2.txt}}
        run:
          dataset: [data1, data2]
          model: [average, median]
    """).cells
    assert [(c.model, c.dataset, c.command) for c in cells] == [
        ("average", "data1", "avg data/1.txt"), ("average", "data1", "avg data/1.txt"),
        ("median", "data1", "med data/1.txt"), ("median", "data1", "med data/1.txt"),
        ("average", "data2", "avg data/2.txt"), ("median", "data2", "med data/2.txt")]
    assert [dict(c.hparams).get("seed") for c in cells] == ["1", "2", "1", "2", None, None]


def test_model_hparams_update_dataset_hparams(project):
    cells = grid(project, """\
        model:
          m:
            command: run <lr> <bs> <extra>
            hparam: {lr: 0.5, extra: x, _bs: 64}
        dataset:
          d: {hparam: {bs: 32, lr: 0.1, only_ds: y}}
    """).cells
    # model wins; `_bs` and `bs` are the same hparam; dataset keys first, then model-only keys
    assert list(cells[0].hparams) == [("_bs", "64"), ("lr", "0.5"), ("only_ds", "y"), ("extra", "x")]
    assert cells[0].command == "run 0.5 64 x"


def test_values_keep_their_yaml_text(project):
    cells = grid(project, """\
        model:
          m:
            command: run <lr> <flag> <ratio>
            hparam: {lr: 1.0e-5, flag: true, ratio: 0.10}
    """).cells
    assert cells[0].command == "run 1.0e-5 true 0.10"


def test_run_filters_values_groups_and_numbers(project):
    launch = """\
        model:
          m:
            command: run
            hparam:
              lr: [0.1, 0.01, 0.001]
              train:
                paper: {_s: linear}
                orig: {_s: constant}
        run:
          hparam: %s
    """
    assert hp(grid(project, launch % "{lr: 0.01}").cells) == [
        {"lr": "0.01", "train": "paper", "_s": "linear"}, {"lr": "0.01", "train": "orig", "_s": "constant"}]
    assert [d["lr"] for d in hp(grid(project, launch % "{lr: [1e-1, 0.001], train: orig}").cells)] == ["0.1", "0.001"]
    # inner keys of groups filter too, by name without the underscore
    assert [d["train"] for d in hp(grid(project, launch % "{s: constant, lr: 0.1}").cells)] == ["orig"]


def test_run_as_list_of_blocks_and_overlap_deduplicated(project):
    g = grid(project, """\
        model:
          a: {command: a <x>, hparam: {x: [1, 2]}}
          b: {command: b}
        run:
          - {model: [a], hparam: {x: 1}}
          - {model: [a, b]}
    """)
    assert [(c.model, dict(c.hparams).get("x")) for c in g.cells] == [("a", "1"), ("a", "2"), ("b", None)]


def test_block_selecting_nothing_warns_and_empty_grid_is_an_error(project, cli):
    g = grid(project, """\
        model:
          a: {command: a <x>, hparam: {x: [1, 2]}}
        run:
          - {hparam: {x: 3}}
          - {hparam: {x: 1}}
    """)
    assert len(g.cells) == 1
    assert g.warnings == ["config/launch.yaml:4:5: this run block selects no cells"]
    project.launch_yaml("model:\n  a: {command: a <x>, hparam: {x: [1, 2]}}\nrun: {hparam: {x: 3}}\n")
    result = cli("local")
    assert result.code == 2
    assert "error: config/launch.yaml: the grid is empty: no cell matches the run section" in result.err


def test_make_line_model_and_dataset_filters(project, cli):
    launch = """\
        model:
          a: {command: echo a}
          b: {command: echo b}
        dataset:
          x: {}
          y: {}
    """
    g = grid(project, launch, models={"b"}, datasets={"y"})
    assert [(c.model, c.dataset) for c in g.cells] == [("b", "y")]
    result = cli("local-dryrun", model="a,c")
    assert result.code == 2
    assert "error: model=a,c: unknown model 'c'" in result.err
    assert "valid: a, b" in result.err
    result = cli("local-dryrun", dataset="yy")
    assert "did you mean 'y'?" in result.err


def test_placeholders_fill_every_string_field_of_the_model(project):
    (cell,) = grid(project, """\
        model:
          m:
            command: train --size <size>
            image: registry/img:<tag>
            env: {RUN_TAG: run-<size>}
            file: [configs/<size>.yaml]
            hparam: {_tag: v2, size: big}
    """).cells
    assert cell.command == "train --size big"
    assert cell.settings["image"] == "registry/img:v2"
    assert cell.settings["env"]["RUN_TAG"] == "run-big"
    assert cell.settings["file"] == ["configs/big.yaml"]


def test_unknown_placeholder_warns_with_suggestion_and_is_kept(project):
    g = grid(project, "model:\n  m:\n    command: run <fnn> <<EOF\n    hparam: {_fn: a}\n")
    assert g.cells[0].command == "run <fnn> <<EOF"
    assert g.warnings == ["model.m.command: <fnn> is not an hparam; it is left as written (did you mean 'fn'?)"]


def test_nested_placeholder_values(project):
    (cell,) = grid(project, "model:\n  m:\n    command: run <out>\n    hparam: {_out: runs/<lr>, lr: 0.1}\n").cells
    assert cell.command == "run runs/0.1"


def test_comments_and_local_remote_sugar(project, monkeypatch):
    (cell,) = grid(project, """\
        model:
          m:
            command: >-
              [](make download file=data/;) ##fetch data first##python a.py x[0] <x>
            hparam: {x: 1}
    """).cells
    assert cell.local_command == "python a.py x[0] 1"
    assert cell.command == "make download file=data/; python a.py x[0] 1"
    assert cell.command_for(in_cluster=False) == cell.local_command


def test_local_command_field(project):
    (cell,) = grid(project, "model:\n  m:\n    command: srun <x>\n    local_command: run <x>\n"
                            "    hparam: {x: 1}\n").cells
    assert (cell.local_command, cell.command) == ("run 1", "srun 1")


@pytest.mark.parametrize("text, local, remote", [
    ("[a](b)", "a", "b"),
    ("[[n]](m(n))", "[n]", "m(n)"),
    ("x[0] and [1, 2]", "x[0] and [1, 2]", "x[0] and [1, 2]"),
    ("[unclosed](x", "[unclosed](x", "[unclosed](x"),
    ("[](only remote) run", " run", "only remote run"),
    ("python -c 'a[1]' [l](r)", "python -c 'a[1]' l", "python -c 'a[1]' r"),
    ("[a] (b)", "[a] (b)", "[a] (b)"),
])
def test_local_remote_scanner(text, local, remote):
    assert sugar.split_local_remote(text) == (local, remote)


def test_multiline_commands_are_kept_as_scripts(project):
    (cell,) = grid(project, "model:\n  m:\n    command: |\n      echo one\n      echo <x>\n    hparam: {x: two}\n").cells
    assert cell.command == cell.local_command == "echo one\necho two"


def test_missing_separator_warning(project):
    g = grid(project, "model:\n  m:\n    command: >-\n      python a.py\n      python b.py\n")
    assert g.warnings == ["model.m.command: two commands on one line without ; or && between them: "
                          "'python a.py python b.py'"]


def test_hparam_named_like_a_cluster_field_overrides_it_per_cell(project):
    cells = grid(project, """\
        model:
          m:
            command: run --gpus <gpu_count>
            memory: 16
            hparam:
              _gpu_count: [1, 2]
              size:
                small: {_memory: 8}
                large: {_memory: 64.5}
    """).cells
    assert [(c.settings["gpu_count"], c.settings["memory"], c.command) for c in cells] == [
        (1, 8, "run --gpus 1"), (1, 64.5, "run --gpus 1"), (2, 8, "run --gpus 2"), (2, 64.5, "run --gpus 2")]
    # hidden hparams do not show in names but still make them unique
    assert len({c.name for c in cells}) == 4
    assert all("gpu" not in c.name for c in cells)


def test_list_fields_are_ordinary_hparams(project):
    (cell,) = grid(project, "model:\n  m:\n    command: cat <file>\n    hparam: {_file: a.txt}\n").cells
    assert cell.command == "cat a.txt"
    assert cell.settings["file"] == []


def test_no_dataset_section_gives_names_without_double_hyphen(project):
    (cell,) = grid(project, "model:\n  m:\n    command: run\n    hparam: {x: 1}\n").cells
    assert cell.dataset == ""
    assert "--" not in cell.name
    assert cell.name.startswith("alice-demo-m-x-1-")


def test_duplicate_cells_from_different_models_get_different_names(project):
    cells = grid(project, "model:\n  a-b: {command: x}\n  a_b: {command: y}\n").cells
    assert len({c.name for c in cells}) == 2


def test_named_groups_alone_override_cluster_fields(project):
    cells = grid(project, """\
        model:
          m:
            command: run
            hparam:
              size:
                small: {_memory: 8, _gpu_count: 1}
                large: {_memory: 64, _gpu_count: 2}
    """).cells
    assert [(c.settings["memory"], c.settings["gpu_count"]) for c in cells] == [(8, 1), (64, 2)]


@pytest.mark.parametrize("command, expected", [
    ("echo <1> <<EOF < in.txt <&3", "echo <1> <<EOF < in.txt <&3"),
    ("run --lr <learning-rate> --p <model.size>", "run --lr 0.1 --p big"),
    ("{literal} <x> {{braces}}", "{literal} 1 {{braces}}"),
])
def test_placeholder_names_and_shell_text(project, command, expected):
    (cell,) = grid(project, f"model:\n  m:\n    command: '{command}'\n"
                            "    hparam: {learning-rate: 0.1, model.size: big, x: 1}\n").cells
    assert cell.command == expected


def test_no_empty_block_warning_for_overlaps_or_make_line_filters(project):
    launch = """\
        model:
          a: {command: a}
          b: {command: b}
        run:
          - {model: [a, b]}
          - {model: [a]}
    """
    assert grid(project, launch).warnings == []                # block 2 repeats cells of block 1
    assert grid(project, launch, models={"b"}).warnings == []  # model=b leaves block 2 empty on purpose


# -- streaming, counting and the cap --------------------------------------------------------------------
OVERLAPS = """\
    model:
      a: {command: a <x> <y>, hparam: {x: [1, 2, 3], y: [p, q]}}
      b: {command: b <x>, hparam: {x: [1, 2]}}
    dataset:
      d1: {}
      d2: {}
    run:
      - {model: [a], hparam: {x: [1, 2]}}
      - {model: [a, b], dataset: d1}
      - {hparam: {y: q}}
      - {model: a, hparam: {x: 2, y: p}}
"""


def test_a_streamed_grid_gives_the_same_cells_and_counts_overlaps_exactly(project):
    from toolbox.core.grid import stream

    expanded = grid(project, OVERLAPS).cells
    streamed = stream(load_config("."))
    assert streamed.count == len(expanded) == 15
    assert [(c.index, c.name, c.command, c.hparams) for c in streamed] == \
           [(c.index, c.name, c.command, c.hparams) for c in expanded]
    assert len({c.name for c in expanded}) == 15
    assert streamed.first().name == expanded[0].name


def test_grids_beyond_the_cap_are_refused_before_any_cell_is_made(project, cli):
    project.launch_yaml("model:\n  big:\n    command: run\n    hparam: {a: [%s], b: [%s], c: [%s]}\n"
                        % ((", ".join(str(i) for i in range(50)),) * 3))
    for command in ("local-dryrun", "plan", "local", "dryrun"):
        result = cli(command)
        assert result.code == 2
        assert result.err.startswith("error: config/launch.yaml: the grid has 125,000 cells, more than "
                                     "max_cells=100,000\n    model 'big': 125,000 cells\n")
        assert "hint: narrow it (run: section, model=, dataset=), or raise the cap for this command: " \
               "max_cells=125000" in result.err
    result = cli("local-dryrun", max_cells=125000)
    assert result.code == 0 and result.out.count("\n") == 125000


def test_two_cells_with_one_name_are_an_error_even_when_streamed(project, monkeypatch):
    from toolbox.core import grid as gridmod

    monkeypatch.setattr(gridmod.naming, "cell_hash", lambda identity: "0" * 10)   # a forced hash collision
    project.launch_yaml("model:\n  m:\n    command: run <_x>\n    hparam: {_x: [1, 2, 3]}\n")
    with pytest.raises(ConfigError) as info:
        expand(load_config("."))
    assert [p.what for p in info.value.problems] == ["two different cells are named 'alice-demo-m-0000000000'"]
    lazy = gridmod.stream(load_config("."))
    seen = []
    with pytest.raises(ConfigError):
        for cell in lazy:
            seen.append(cell.name)
    assert len(seen) == 3   # every line was out before the error: it comes at the end
