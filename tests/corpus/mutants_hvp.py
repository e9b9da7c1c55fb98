"""Mutants of Section 1 (the three HVPs), written as students fill the cells.

The cheats are on 1.2 only: hvp_double_backward drives every later section
of the notebook, and a Hessian-materializing version of it would take the
notebook past its time budget (the big-model check they trip is the same
code for 1.1 and 1.2).
"""

from tests.corpus import build
from tests.corpus.mutants import register

# The given part of the ex1_1_code cell: later cells use these helpers.
HELPERS = '''import torch.nn.functional as F
from torch.func import functional_call

def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

def unflatten_into_dict(flat, ref_named):
    out, i = {}, 0
    for n, p in ref_named.items():
        out[n] = flat[i:i+p.numel()].view_as(p)
        i += p.numel()
    return out

'''

DOUBLE_BACKWARD = HELPERS + '''def hvp_double_backward(model, X, y, v):
    theta = flat_params(model).requires_grad_(True)
    params = unflatten_into_dict(theta, dict(model.named_parameters()))
    loss = F.cross_entropy(functional_call(model, params, (X,)), y)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, theta)
    return hv
'''

JVP_HEADER = '''from torch.func import grad, jvp

def hvp_jvp_of_grad(model, X, y, v):
    named = dict(model.named_parameters())

    def loss_fn(theta):
        out = functional_call(model, unflatten_into_dict(theta, named), (X,))
        return F.cross_entropy(out, y)

'''

FD_HEADER = '''def hvp_finite_difference(model, X, y, v, eps=1e-3):
    named = dict(model.named_parameters())

    def loss_fn(theta):
        out = functional_call(model, unflatten_into_dict(theta, named), (X,))
        return F.cross_entropy(out, y)

    theta = flat_params(model)
'''

# --- correct, written differently -------------------------------------------

PARAMS_LIST_DOUBLE_BACKWARD = HELPERS + '''def hvp_double_backward(model, X, y, v):
    params = list(model.parameters())
    loss = F.cross_entropy(model(X), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    # split v like the parameters, then differentiate sum_i <g_i, v_i>
    v_parts, i = [], 0
    for p in params:
        v_parts.append(v[i:i + p.numel()].view_as(p))
        i += p.numel()
    g_dot_v = sum((g * vp).sum() for g, vp in zip(grads, v_parts))
    hv = torch.autograd.grad(g_dot_v, params)
    return torch.cat([h.reshape(-1) for h in hv])
'''

IN_PLACE_FD = '''def hvp_finite_difference(model, X, y, v, eps=1e-3):
    params = list(model.parameters())

    def flat_grad():
        loss = F.cross_entropy(model(X), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    def nudge(step):
        with torch.no_grad():
            i = 0
            for p in params:
                p.add_(step * v[i:i + p.numel()].view_as(p))
                i += p.numel()

    nudge(eps)
    g_plus = flat_grad()
    nudge(-2 * eps)
    g_minus = flat_grad()
    nudge(eps)  # put the weights back
    return (g_plus - g_minus) / (2 * eps)
'''

VJP_OF_GRAD = '''from torch.func import grad, jvp, vjp

def hvp_jvp_of_grad(model, X, y, v):
    # H is symmetric, so the vjp of the gradient map is H v too
    named = dict(model.named_parameters())

    def loss_fn(theta):
        return F.cross_entropy(functional_call(model, unflatten_into_dict(theta, named), (X,)), y)

    _, pullback = vjp(grad(loss_fn), flat_params(model))
    (hv,) = pullback(v)
    return hv
'''

FP64_FD = '''import copy

def hvp_finite_difference(model, X, y, v, eps=1e-3):
    # work in double precision so the difference quotient keeps its digits
    model64 = copy.deepcopy(model).double()
    named = dict(model64.named_parameters())

    def loss_fn(theta):
        out = functional_call(model64, unflatten_into_dict(theta, named), (X.double(),))
        return F.cross_entropy(out, y)

    theta = flat_params(model64)
    v64 = v.double()
    g = grad(loss_fn)
    return ((g(theta + eps * v64) - g(theta - eps * v64)) / (2 * eps)).to(v.dtype)
'''

PYTREE_JVP = '''from torch.func import grad, jvp

def hvp_jvp_of_grad(model, X, y, v):
    params = {k: p.detach() for k, p in model.named_parameters()}
    tangents, i = {}, 0
    for k, p in params.items():
        tangents[k] = v[i:i + p.numel()].view_as(p)
        i += p.numel()

    def loss_fn(p):
        return F.cross_entropy(functional_call(model, p, (X,)), y)

    _, hv = jvp(grad(loss_fn), (params,), (tangents,))
    return torch.cat([hv[k].reshape(-1) for k in params])
'''

register("hvp_correct_params_list", "correct", lambda: build.variant({
    "ex1_1_code": PARAMS_LIST_DOUBLE_BACKWARD, "ex1_3_code": IN_PLACE_FD}))
register("hvp_correct_vjp_fp64", "correct", lambda: build.variant({
    "ex1_2_code": VJP_OF_GRAD, "ex1_3_code": FP64_FD}))
register("hvp_correct_pytree_jvp", "correct", lambda: build.variant({
    "ex1_2_code": PYTREE_JVP}))

# --- bugs -------------------------------------------------------------------

# Everything after Section 1 that calls hvp_double_backward in the notebook.
USES_DOUBLE_BACKWARD = ("2.3", "3.1", "3.2", "6.0", "6.1")

NO_CREATE_GRAPH = HELPERS + '''def hvp_double_backward(model, X, y, v):
    theta = flat_params(model).requires_grad_(True)
    params = unflatten_into_dict(theta, dict(model.named_parameters()))
    loss = F.cross_entropy(functional_call(model, params, (X,)), y)
    (g,) = torch.autograd.grad(loss, theta)
    (hv,) = torch.autograd.grad(g @ v, theta)
    return hv
'''

GRAD_OF_G_SUM = HELPERS + '''def hvp_double_backward(model, X, y, v):
    theta = flat_params(model).requires_grad_(True)
    params = unflatten_into_dict(theta, dict(model.named_parameters()))
    loss = F.cross_entropy(functional_call(model, params, (X,)), y)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    (hg,) = torch.autograd.grad(g.sum(), theta)
    return hg * v
'''

NORMALIZES_V = HELPERS + '''def hvp_double_backward(model, X, y, v):
    v = v / v.norm()
    theta = flat_params(model).requires_grad_(True)
    params = unflatten_into_dict(theta, dict(model.named_parameters()))
    loss = F.cross_entropy(functional_call(model, params, (X,)), y)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, theta)
    return hv
'''

register("hvp_bug_no_create_graph", "bug", lambda: build.variant({
    "ex1_1_code": NO_CREATE_GRAPH}),
    loses=["1.1"], may_lose=["1.4", *USES_DOUBLE_BACKWARD])
register("hvp_bug_grad_of_g_sum", "bug", lambda: build.variant({
    "ex1_1_code": GRAD_OF_G_SUM}),
    loses=["1.1"], may_lose=USES_DOUBLE_BACKWARD)
# The notebook only ever passes unit vectors after Section 1, so nothing else moves.
register("hvp_bug_normalizes_v", "bug", lambda: build.variant({
    "ex1_1_code": NORMALIZES_V}), loses=["1.1"])

register("hvp_bug_jvp_returns_primal", "bug", lambda: build.variant({
    "ex1_2_code": JVP_HEADER + "    return jvp(grad(loss_fn), (flat_params(model),), (v,))[0]\n"}),
    loses=["1.2"])
register("hvp_bug_jvp_per_parameter_list", "bug", lambda: build.variant({
    "ex1_2_code": PYTREE_JVP.replace("torch.cat([hv[k].reshape(-1) for k in params])",
                                     "list(hv.values())")}),
    loses=["1.2"])

register("hvp_bug_fd_forward_difference", "bug", lambda: build.variant({
    "ex1_3_code": FD_HEADER + "    g = grad(loss_fn)\n"
                              "    return (g(theta + eps * v) - g(theta)) / eps\n"}),
    loses=["1.3"])
register("hvp_bug_fd_fixed_step", "bug", lambda: build.variant({
    "ex1_3_code": FD_HEADER + "    h = 1e-3  # step from the notebook text\n"
                              "    g_plus = grad(loss_fn)(theta + h * v)\n"
                              "    g_minus = grad(loss_fn)(theta - h * v)\n"
                              "    return (g_plus - g_minus) / (2 * h)\n"}),
    loses=["1.3"])

# --- cheats: the right numbers from a materialized Hessian --------------------

register("hvp_cheat_func_hessian", "cheat", lambda: build.variant({
    "ex1_2_code": JVP_HEADER.replace("from torch.func import grad, jvp",
                                     "from torch.func import grad, jvp, hessian")
    + "    return hessian(loss_fn)(flat_params(model)) @ v\n"}),
    loses=["1.2"])
register("hvp_cheat_basis_loop", "cheat", lambda: build.variant({
    "ex1_2_code": '''from torch.func import grad, jvp

def hvp_jvp_of_grad(model, X, y, v):
    # build H one column at a time, then multiply
    P = v.numel()
    columns = []
    for i in range(P):
        e = torch.zeros(P, dtype=v.dtype)
        e[i] = 1.0
        columns.append(hvp_double_backward(model, X, y, e))
    H = torch.stack(columns, dim=1)
    return H @ v
'''}), loses=["1.2"],
    # Its P HVPs per call make the 1.4 timing cell ~60x the reference's (7 s here):
    # near the cell's budget (30x, at least 10 s), so 1.4 may be cut on a loaded machine.
    may_lose=["1.4"])
