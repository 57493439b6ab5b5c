"""An autoregressive policy with a verifiable reward: the test bed of group baselines.

For each of P prompts (the factors, ``Problem.n_factors``) the policy generates a response
o = (o_1, ..., o_n) token by token over a vocabulary of V content tokens and an
end-of-sequence token EOS (index V), of at most L tokens: it stops at EOS (which counts as a
token of the response) or after L tokens, so its length n = |o| is between 1 and L. With
prefix states h_t = (prompt, o_<t),

    pi(o | prompt) = prod_{t=1..n} pi(o_t | h_t),   pi(. | h) = softmax(logits(h)),

the logits come from a table with one row of V + 1 logits per (prompt, prefix) state
(``param=tabular``: sum_{t<L} V^t states per prompt, exactly the softmax policy of the
prompt's token tree), or from an MLP on one-hot features of (prompt, position, previous
token) (``param=mlp``), shared by all prompts.

Reward. A 0/1 verifiable reward r(o) with the prompt's target token a_p = p mod V:
``rule=contains``, correct when the content (the tokens before EOS) contains a_p, so longer
responses are more likely correct; ``rule=first``, correct when the first token is a_p, so
correctness does not depend on length and any length drift of training is the normaliser's.
The cost is f = -sum_p r(o_p) (``cost_terms``: -r(o_p) per prompt).

Exact gradient. The responses of one prompt are N = sum_{t<L} V^t + V^L sequences; where N
is at most ``max_configs``, sum_o pi(o) f(o) is enumerated per prompt and differentiated
(``Policy.truth_of``: enumeration); else ``truth=reference`` estimates it. At ``length = 1`` the
policy is a contextual bandit over V + 1 arms per prompt (EOS, an empty response, is one):
with pi = softmax(theta_p), dE[-r]/dtheta_pa = -pi_a (r_a - sum_b pi_b r_b) in closed form
(``tests/test_policy.py``).

Per-token log-probabilities (``token_log_probs``) and lengths (``lengths``) are exposed
(``Capability.SEQUENCE``) so that the group estimators can normalise each response's
log-probability by its length or by the group's tokens (``estimators.group``).

References: Shao et al. (2024), "DeepSeekMath: Pushing the Limits of Mathematical Reasoning
in Open Language Models", arXiv:2402.03300, Section 4.1 (GRPO); Liu et al. (2025),
"Understanding R1-Zero-Like Training: A Critical Perspective", arXiv:2503.20783, Section 3
(length bias of the per-sequence normaliser).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution

from problems.base import Capability, LatentKind, Params, Problem, StressSetting, Truth
from problems.options import MAX_ENUMERATED, Option, resolve_options
from problems.truth import TruthSource

#: responses per prompt behind the sampled training metrics where enumeration is too large
TRAIN_SAMPLES = 4096


def n_responses(vocab: int, length: int) -> int:
    """N = sum_{t<L} V^t (responses ended by EOS) + V^L (cut at L tokens)."""
    return sum(vocab**t for t in range(length)) + vocab**length


def all_responses(vocab: int, length: int) -> Tensor:
    """Every response ``[N, L]`` (long), padded with EOS (= ``vocab``) after its end."""
    rows = []
    for n in range(length + 1):  # n content tokens, then EOS unless n = L
        for content in torch.cartesian_prod(*[torch.arange(vocab)] * n) if n else [None]:
            tokens = torch.full((length,), vocab, dtype=torch.long)
            if content is not None:
                tokens[:n] = content.reshape(-1)
            rows.append(tokens)
    return torch.stack(rows)


class PolicyDistribution(Distribution):
    """pi(o | prompt) for P prompts as one distribution: event ``[P, L]`` of token ids.

    Args:
        log_table: ``[R, P, S, V + 1]`` log-softmax of the logits of every prefix state.
        vocab: V; length: L.
    """

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, log_table: Tensor, vocab: int, length: int) -> None:
        self.log_table, self.vocab, self.length = log_table, vocab, length
        r, p = log_table.shape[:2]
        super().__init__(torch.Size([r]), torch.Size([p, length]), validate_args=False)

    def states(self, z: Tensor) -> Tensor:
        """The prefix state of every position ``[..., L]`` (0 after the end, unused): the
        state of prefix (o_1..o_t) is offset_t + sum_i o_i V^(t-i), offset_t = sum_{u<t} V^u."""
        v = self.vocab
        state = torch.zeros_like(z[..., 0])
        out = [state]
        for t in range(1, self.length):
            offset, previous = sum(v**u for u in range(t)), sum(v**u for u in range(t - 1))
            within = (state - previous) * v + z[..., t - 1].clamp_max(v - 1)
            out.append(offset + within)
            state = out[-1]
        return torch.stack(out, -1)

    def mask(self, z: Tensor) -> Tensor:
        """1 at the positions of the response (up to and with its EOS), else 0: ``[..., L]``."""
        ended = (z == self.vocab).long().cumsum(-1)  # EOS seen at or before t
        before = torch.cat([torch.zeros_like(ended[..., :1]), ended[..., :-1]], -1)
        return (before == 0).to(self.log_table.dtype)

    def token_log_probs(self, z: Tensor) -> Tensor:
        """log pi(o_t | h_t) at every position of ``z [K, R, P, L]``, 0 after the end."""
        states = self.states(z)  # [K, R, P, L]
        table = self.log_table.unsqueeze(0).expand(z.shape[0], *self.log_table.shape)
        rows = table.gather(3, states.unsqueeze(-1).expand(*states.shape, table.shape[-1]))
        picked = rows.gather(-1, z.unsqueeze(-1)).squeeze(-1)  # [K, R, P, L]
        return picked * self.mask(z)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.token_log_probs(value).sum((-1, -2))

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        k = math.prod(sample_shape)
        r, p, _, classes = self.log_table.shape
        z = torch.full((k, r, p, self.length), self.vocab, dtype=torch.long,
                       device=self.log_table.device)
        done = torch.zeros(k, r, p, dtype=torch.bool, device=z.device)
        for t in range(self.length):
            state = self.states(z)[..., t]  # [K, R, P]: depends only on tokens before t
            table = self.log_table.unsqueeze(0).expand(k, *self.log_table.shape)
            logits = table.gather(3, state[..., None, None].expand(k, r, p, 1, classes))
            token = Categorical(logits=logits.squeeze(3)).sample()
            z[..., t] = torch.where(done, self.vocab, token)
            done = done | (token == self.vocab)
        return z.reshape(*sample_shape, r, p, self.length)


class Policy(Problem):
    """P prompts, K responses each, 0/1 verifiable reward, cost -reward (module docstring).

    References: Shao et al. (2024), arXiv:2402.03300 (GRPO); Liu et al. (2025),
    arXiv:2503.20783 (Dr. GRPO); Williams (1992), Machine Learning 8.
    """

    name = "policy"
    # tested in tests/test_policy.py and tests/test_group.py (enumeration truth)
    example_options: ClassVar[dict] = {"vocab": 2, "length": 3, "prompts": 2}
    benchmark_options: ClassVar[dict] = {"prompts": 4}
    verify_settings = (
        StressSetting({"eos_logit": -1.0, "length": 3, "prompts": 2, "vocab": 2}, quick=True),
        StressSetting({"eos_logit": 1.0, "length": 2, "param": "mlp", "prompts": 2, "vocab": 2}),
        StressSetting({"eos_logit": 2.0, "length": 1, "prompts": 2, "rule": "first", "vocab": 3}),
    )
    description = "autoregressive policy with EOS over P prompts, 0/1 reward; enumeration"
    latent = LatentKind.SEQUENCE
    provides = frozenset({Capability.SEQUENCE, Capability.CONTEXT})
    options: ClassVar[dict[str, Option]] = {
        "vocab": Option(2, "content tokens V (EOS is one more)", minimum=1),
        "length": Option(3, "most tokens per response L (EOS included)", minimum=1),
        "prompts": Option(2, "prompts P, each its own group of K responses", minimum=1),
        "rule": Option("contains", "reward 1 when the content contains the prompt's target "
                       "token (contains) or starts with it (first)", choices=("contains", "first")),
        "param": Option("tabular", "tabular (a logit row per prefix) or mlp",
                        choices=("tabular", "mlp")),
        "hidden": Option(8, "tanh units of the mlp policy", minimum=1,
                         applies=("param", ("mlp",))),
        "eos_logit": Option(0.0, "initial logit of EOS (the content tokens' are 0)"),
        "init_seed": Option(0, "seed of the mlp's initial weights", minimum=0,
                            applies=("param", ("mlp",))),
        "max_configs": Option(2**16, "most responses of one prompt enumerated for exact truth",
                              minimum=1, maximum=MAX_ENUMERATED),
        "truth": Option("auto", "auto (enumeration), reference or none",
                        choices=("auto", "reference", "none")),
        "reference_samples": Option(100, "samples per estimate of the truth=reference gradient",
                                    minimum=2),
        "reference_repeats": Option(2000, "estimates averaged for the truth=reference gradient",
                                    minimum=2),
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        v, length = self.option_values["vocab"], self.option_values["length"]
        self.vocab, self.length, self.n_prompts = v, length, self.option_values["prompts"]
        self.n_states = sum(v**t for t in range(length))

    @classmethod
    def capabilities(cls, options=None) -> frozenset[Capability]:
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        exact = n_responses(values["vocab"], values["length"]) <= values["max_configs"]
        return cls.provides | ({Capability.EXACT_OBJECTIVE} if exact else set())

    @classmethod
    def truth_of(cls, options=None, n_samples: int = 1) -> TruthSource:
        """``auto``: enumeration of each prompt's responses within ``max_configs``, else none;
        ``reference``: the mean of ``reinforce_loo`` estimates; ``none``."""
        values = resolve_options(f"problem {cls.name!r}", cls.options, options or {})
        if values["truth"] == "reference":
            return TruthSource.reference("reinforce_loo", values["reference_samples"],
                                         values["reference_repeats"])
        size = n_responses(values["vocab"], values["length"])
        if values["truth"] == "none" or size > values["max_configs"]:
            return TruthSource.none()
        return TruthSource.enumeration(size)

    @property
    def n_factors(self) -> int:
        return self.n_prompts

    def targets(self) -> Tensor:
        """The target token a_p = p mod V of every prompt ``[P]``."""
        return torch.arange(self.n_prompts, device=self.device) % self.vocab

    def init_params(self) -> Params:
        classes = self.vocab + 1
        if self.option_values["param"] == "tabular":
            logits = torch.zeros(self.n_prompts, self.n_states, classes, dtype=self.dtype,
                                 device=self.device)
            logits[..., self.vocab] = self.option_values["eos_logit"]
            return {"logits": logits}
        width, hidden = self.n_prompts + self.length + classes, self.option_values["hidden"]
        generator = torch.Generator().manual_seed(self.option_values["init_seed"])
        w1 = torch.randn(width, hidden, generator=generator, dtype=torch.float64)
        b2 = torch.zeros(classes, dtype=torch.float64)
        b2[self.vocab] = self.option_values["eos_logit"]
        return {
            "w1": self.tensor(w1 / math.sqrt(width)),
            "b1": self.tensor(torch.zeros(hidden)),
            "w2": self.tensor(torch.zeros(hidden, classes)),
            "b2": self.tensor(b2),
        }

    def state_features(self) -> Tensor:
        """One-hot (prompt, position, previous token or BOS) of every state ``[P, S, W]``."""
        v, p, length = self.vocab, self.n_prompts, self.length
        rows = []
        for t in range(length):
            for index in range(v**t):
                previous = v if t == 0 else index % v  # BOS at the first position
                rows.append(torch.cat([torch.eye(length)[t], torch.eye(v + 1)[previous]]))
        per_state = torch.stack(rows)  # [S, L + V + 1]
        prompt = torch.eye(p).unsqueeze(1).expand(p, self.n_states, p)
        both = torch.cat([prompt, per_state.expand(p, -1, -1)], -1)
        return both.to(dtype=self.dtype, device=self.device)

    def log_table(self, params: Params) -> Tensor:
        """log pi(. | state) of every prompt and state ``[R, P, S, V + 1]``."""
        if "logits" in params:
            return torch.log_softmax(params["logits"], -1)
        features = self.state_features().reshape(1, -1, self.n_prompts + self.length
                                                 + self.vocab + 1)
        hidden = torch.tanh(features @ params["w1"] + params["b1"].unsqueeze(1))  # [R, P*S, H]
        logits = hidden @ params["w2"] + params["b2"].unsqueeze(1)
        return torch.log_softmax(logits, -1).reshape(-1, self.n_prompts, self.n_states,
                                                     self.vocab + 1)

    def distribution(self, params: Params) -> PolicyDistribution:
        return PolicyDistribution(self.log_table(params), self.vocab, self.length)

    def rewards(self, z: Tensor) -> Tensor:
        """r(o_p) in {0, 1} of ``z [..., P, L]``: ``[..., P]``."""
        content = torch.cumsum((z == self.vocab).long(), -1) == 0  # before the first EOS
        hit = (z == self.targets().unsqueeze(-1)) & content
        if self.option_values["rule"] == "first":
            hit = hit[..., :1]
        return hit.any(-1).to(self.dtype)

    def lengths(self, z: Tensor) -> Tensor:
        """|o_p|, the tokens of each response with its EOS: ``[..., P, L]`` -> ``[..., P]``."""
        ended = torch.cumsum((z == self.vocab).long(), -1)
        before = torch.cat([torch.zeros_like(ended[..., :1]), ended[..., :-1]], -1)
        return (before == 0).sum(-1).to(self.dtype)

    def token_log_probs(self, dist: PolicyDistribution, z: Tensor) -> Tensor:
        """log pi(o_t | h_t) per position ``[K, R, P, L]`` (0 after each response's end)."""
        return dist.token_log_probs(z)

    def cost_terms(self, z: Tensor, params: Params, *, detach_q: bool = False) -> Tensor:
        if detach_q:
            raise NotImplementedError(f"{self.name} does not separate log q in its cost")
        return -self.rewards(z)

    def cost(self, z: Tensor, params: Params) -> Tensor:
        return self.cost_terms(z, params).sum(-1)

    def log_prob_terms(self, dist: Distribution, z: Tensor) -> Tensor:
        return dist.token_log_probs(z).sum(-1)

    def context(self) -> Tensor:
        return torch.eye(self.n_prompts, dtype=self.dtype, device=self.device)

    def responses(self) -> Tensor:
        """Every response of one prompt ``[N, L]`` (``all_responses``)."""
        return all_responses(self.vocab, self.length).to(self.device)

    def response_probs(self, params: Params) -> Tensor:
        """pi(o | prompt p) of every response ``[R, P, N]`` (differentiable)."""
        z = self.responses()  # [N, L]
        r = next(iter(params.values())).shape[0]
        grid = z.reshape(-1, 1, 1, self.length).expand(-1, r, self.n_prompts, -1)  # [N, R, P, L]
        log_q = self.distribution(params).token_log_probs(grid).sum(-1)  # [N, R, P]
        return log_q.exp().permute(1, 2, 0)

    def enumerable(self) -> bool:
        return n_responses(self.vocab, self.length) <= self.option_values["max_configs"]

    def response_table(self) -> tuple[Tensor, Tensor]:
        """The reward ``[P, N]`` and the length ``[N]`` of every response of every prompt."""
        z = self.responses()
        grid = z.unsqueeze(-2).expand(-1, self.n_prompts, -1)  # [N, P, L]
        return self.rewards(grid).T, self.lengths(grid[:, 0])

    def objective_terms(self, params: Params, n_samples: int = 1) -> Tensor | None:
        """E_pi[-r(o_p)] per prompt ``[R, P]``, by enumeration."""
        if not self.enumerable():
            return None
        reward, _ = self.response_table()
        return -(self.response_probs(params) * reward).sum(-1)

    def objective(self, params: Params, n_samples: int = 1) -> Tensor | None:
        terms = self.objective_terms(params)
        return None if terms is None else terms.sum(-1)

    def truth(self, params: Params, n_samples: int = 1) -> Truth | None:
        if not self.truth_of(self.option_values, n_samples).exact:
            return None
        leaf = {k: v.detach().unsqueeze(0).requires_grad_(True) for k, v in params.items()}
        grads = torch.autograd.grad(self.objective(leaf).sum(), list(leaf.values()),
                                    allow_unused=True)
        return Truth(
            grad={k: (torch.zeros_like(v[0]) if g is None else g[0]).detach()
                  for (k, v), g in zip(leaf.items(), grads, strict=True)},
            kind="enumeration",
        )

    def exact_statistics(self, params: Params) -> dict[str, float]:
        """Expected reward, expected length, and the expected length of correct and of
        incorrect responses (E[|o| | r = 1], E[|o| | r = 0]), averaged over prompts, by
        enumeration at ``params`` (no repeat dimension); empty where not enumerable."""
        if not self.enumerable():
            return {}
        with torch.no_grad():
            probs = self.response_probs({k: v.unsqueeze(0) for k, v in params.items()})[0]
            reward, length = self.response_table()  # [P, N], [N]
            right, wrong = probs * reward, probs * (1 - reward)
            out = {
                "expected_reward": (right.sum(-1)).mean(),
                "mean_length": (probs * length).sum(-1).mean(),
                "length_correct": ((right * length).sum(-1) / right.sum(-1)).mean(),
                "length_incorrect": ((wrong * length).sum(-1) / wrong.sum(-1)).mean(),
            }
        return {k: float(v) for k, v in out.items()}

    def train_metrics(self, train: Params) -> dict[str, float]:
        """``exact_statistics`` where enumerable; else the expected reward and mean length
        from ``TRAIN_SAMPLES`` responses per prompt (the caller forks the RNG)."""
        if self.enumerable():
            return self.exact_statistics(train)
        params = {k: v.detach().unsqueeze(0) for k, v in train.items()}
        with torch.no_grad():
            z = self.distribution(params).sample((TRAIN_SAMPLES,))
            return {"expected_reward": float(self.rewards(z).mean()),
                    "mean_length": float(self.lengths(z).mean())}
