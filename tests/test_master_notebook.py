"""The instructor's master notebook: valid nbgrader markup, runs end to end,
its solutions agree with reference/, and the claims its text makes hold."""

import json
import math

import nbformat
import pytest
import torch

from reference import krylov_hessian as ref
from tests.notebooks import MASTER, errors, execute, grade_id, stdout

# DESIGN.md's exercise table: grade id -> points (100 in all).
POINTS = {
    "ex0_1": 2, "ex0_2": 3, "ex0_3": 2, "ex1_1": 8, "ex1_2": 8, "ex1_3": 5, "ex1_4": 2,
    "ex2_1": 10, "ex2_2": 4, "ex2_3": 4, "ex3_1": 8, "ex3_2": 3, "ex4_1": 12, "ex4_2": 3,
    "ex5_1": 6, "ex5_2": 6, "ex5_3": 6, "ex6_0": 4, "ex6_1": 4,
}

# Appended to the executed master: dumps what the checks below compare,
# including ground truth for the trained model computed in the same kernel.
DUMP = """
import json, sys
sys.path.insert(0, os.path.abspath('../../..'))
from reference import krylov_hessian as ref
trained_truth = torch.linalg.eigvalsh(ref.materialize(
    ref.hessian_matvec(model_mnist, X_train, y_train), P_mnist))
json.dump({
    'op_norm': op_norm, 'fro_norm': fro_norm, 'eps32': eps32, 'eps64': eps64,
    'residuals': residuals, 'forward_errors': forward_errors,
    'ritz_init': ritz_init.tolist(), 'true_init': true_eigs_init.tolist(),
    'ritz_trained': ritz_trained.tolist(), 'true_trained': trained_truth.tolist(),
    'ritz_trained_ref': ref.hessian_ritz(model_mnist, X_train, y_train).tolist(),
}, open(DUMP_PATH, 'w'))
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(MASTER, as_version=4)
    dump_path = tmp_path_factory.mktemp("master") / "values.json"
    nb.cells.append(nbformat.v4.new_code_cell(f"DUMP_PATH = {str(dump_path)!r}\n{DUMP}"))
    execute(nb, MASTER.parent)
    values = json.loads(dump_path.read_text()) if dump_path.exists() else None
    return nb, values


def test_master_is_valid_nbgrader_with_design_points():
    nb = nbformat.read(MASTER, as_version=4)
    nbformat.validate(nb)
    graded = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert graded == POINTS
    ids = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    for cell in nb.cells:
        if "BEGIN SOLUTION" in cell.source:
            assert cell.metadata["nbgrader"]["solution"], grade_id(cell)


def test_master_executes_without_errors_and_visible_tests_pass(executed):
    nb, values = executed
    assert errors(nb) == {}, {i: (e.ename, e.evalue) for i, e in errors(nb).items()}
    text = "".join(stdout(c) for c in nb.cells)
    for marker in ["test_hvp passed for hvp_double_backward", "test_hvp passed for hvp_jvp_of_grad",
                   "test_power_iteration passed", "all three agree", "✓ matches",
                   "magnitudes match"]:
        assert marker in text
    assert values is not None


def test_master_variables_agree_with_reference(executed):
    _, values = executed
    torch.manual_seed(0)
    A = torch.randn(20, 20)
    assert values["op_norm"] == pytest.approx(ref.op_norm(A), rel=1e-6)
    assert values["fro_norm"] == pytest.approx(ref.fro_norm(A), rel=1e-6)
    assert values["eps32"] == torch.finfo(torch.float32).eps
    assert values["eps64"] == torch.finfo(torch.float64).eps
    # The trained model depends on the notebook's RNG history, so the reference
    # runs on the kernel's own trained parameters; same algorithm, same start.
    assert torch.allclose(torch.tensor(values["ritz_trained"]),
                          torch.tensor(values["ritz_trained_ref"]), rtol=1e-4, atol=1e-5)


# --- The notebook text's numerical claims, measured on our models -------------


def test_claim_residual_stays_small_forward_error_grows(executed):
    _, values = executed
    # Backward-stable LU: residual within a small multiple of fp32 eps for all kappa.
    assert max(values["residuals"]) < 1e-6
    errors_by_kappa = values["forward_errors"]
    assert errors_by_kappa[0] < 1e-6
    assert errors_by_kappa[-1] > 0.1  # kappa = 1e8 ~ 1/eps: no digits left
    assert errors_by_kappa[-1] > 1e4 * errors_by_kappa[0]


def test_claim_machine_epsilon_is_the_gap_not_the_smallest_x():
    one = torch.tensor(1.0)
    assert ref.find_eps(torch.float32) == 2.0 ** -23
    assert one + 2.0 ** -24 == one  # a tie, rounded to even
    assert one + 2.0 ** -24 * (1 + 2.0 ** -10) > one


def test_claim_rayleigh_quotient_converges_at_twice_the_rate():
    specs = {"wide": [10.0] + [1.0] * 49, "narrow": [10.0, 9.5] + [1.0] * 48,
             "tied": [10.0, 10.0] + [1.0] * 48}
    slopes = {}
    for name, eigs in specs.items():
        A = torch.diag(torch.tensor(eigs))
        _, _, hist = ref.power_iteration(lambda v, A=A: A @ v, 50, num_iters=120)
        points = [(i, math.log10(h)) for i, h in enumerate(hist) if i >= 2 and h > 1e-6]
        xs, ys = zip(*points)
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slopes[name] = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
                        / sum((x - mean_x) ** 2 for x in xs))
    # |l2/l1|^(2k): -2.0 per step for ratio 0.1, -0.0446 for 0.95; the tie
    # converges at the next distinct ratio, 1/10, not "no convergence".
    assert slopes["narrow"] == pytest.approx(2 * math.log10(0.95), rel=0.15)
    assert -2.6 < slopes["wide"] < -1.6
    assert -2.6 < slopes["tied"] < -1.6


def test_claim_deflation_fails_at_sign_ties_not_by_drift():
    from src.tiny_models import count_params, toy_mlp  # on sys.path via conftest

    torch.manual_seed(0)
    model = toy_mlp(seed=1)
    X = torch.randn(8, 20)
    y = torch.randint(0, 4, (8,))
    P = count_params(model)
    matvec = ref.hessian_matvec(model, X, y)
    true = torch.linalg.eigvalsh(ref.materialize(matvec, P))
    by_mag = true[true.abs().argsort(descending=True)]
    vals, _ = ref.power_iteration_deflated(matvec, P, 10, num_iters_per=300)
    rel_err = (vals.abs() - by_mag[:10].abs()).abs() / by_mag[:10].abs()
    bad = [i for i in range(10) if rel_err[i] > 1e-2]
    assert 0 < len(bad) <= 3, rel_err
    assert (rel_err < 1e-4).sum() >= 7
    for i in bad:  # each bad one sits by an opposite-sign eigenvalue of ~equal magnitude
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(by_mag)]
        assert any(by_mag[i] * by_mag[j] < 0
                   and abs(by_mag[i].abs() - by_mag[j].abs()) < 0.03 * by_mag[i].abs()
                   for j in neighbours), (i, by_mag[:11])


def test_claim_lanczos_20_steps_converges_only_the_top_ritz_values():
    torch.manual_seed(42)
    A = torch.randn(60, 60)
    A = A + A.T
    ritz, _ = ref.lanczos_no_reorth(lambda v: A @ v, 60, 20)
    delta = (ritz.sort(descending=True).values[:5]
             - torch.linalg.eigvalsh(A).sort(descending=True).values[:5]).abs()
    assert delta[0] < 1e-3 and delta[1] < 1e-2
    assert delta[3] > 0.5 and delta[4] > 0.5


def test_claim_orthogonality_lost_in_the_twenties_and_fixed_by_reorth():
    A = torch.randn(40, 40, generator=torch.Generator().manual_seed(7))
    A = A + A.T
    _, _, none = ref.lanczos_track_orth(lambda v: A @ v, 40, 40, reorth="none")
    first = next(i for i, e in enumerate(none) if e > 1e-3)
    assert 18 <= first <= 28
    assert next(i for i, e in enumerate(none) if e > 0.1) <= 32
    for mode in ("full", "selective"):
        _, _, hist = ref.lanczos_track_orth(lambda v: A @ v, 40, 40, reorth=mode)
        assert max(hist) < 1e-5, mode


def test_claim_ritz_values_at_init_and_after_training(executed):
    _, values = executed
    def top10(xs):
        return ref.top_by_magnitude(torch.tensor(xs), 10)
    init_err = (top10(values["ritz_init"]) - top10(values["true_init"])).abs() / top10(
        values["true_init"])
    # At init the top ~8 have converged after 30 steps, the tail of the ten has not.
    assert (init_err[:8] < 1e-3).all(), init_err
    assert (init_err[8:] > 1e-3).any(), init_err
    trained_err = (top10(values["ritz_trained"]) - top10(values["true_trained"])).abs() / top10(
        values["true_trained"])
    assert (trained_err < 1e-4).all(), trained_err
