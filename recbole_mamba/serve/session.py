"""Live sessions: a user's state, updated one event at a time, ranked at any moment.

Per event (``observe``), by model:

- MambaRec (without position embeddings): each block's Mamba step (its conv and SSM states):
  O(1) in the history length; the state covers the whole history. On the ``cpu`` backend the whole
  model step is one call into the C kernel (:class:`_MambaRecKernelStep`).
- GRU4Rec: its GRU's hidden state: O(1), whole history.
- RecMamba, MambaRec with position embeddings, MoEMaTrRec: their learned positions stop at
  ``MAX_ITEM_LIST_LENGTH``. Up to it, O(1) for the Mamba parts, and MoEMaTrRec's attention expert
  attends over a key/value cache of the events so far (O(t) per event, O(t) memory). Once the
  window is full, each event re-encodes the last ``MAX_ITEM_LIST_LENGTH`` events (O(L)), so the
  state is always that of the batch model on that window.
- SASRec and every other model: the window of the last ``MAX_ITEM_LIST_LENGTH`` events is kept and
  re-encoded when ranked (O(L)).

So a session's scores equal :meth:`Recommender.scores` on the same history, under the same
context rule (tested for every model, including histories longer than the window).
"""

import io
import math

import torch

from recbole_mamba.errors import ServeError

FORMAT = "recbole-mamba-session/1"


class _Reencode:
    """Any model: keep the window of ids, encode it with the batch model when ranked."""

    def __init__(self, rec):
        self.rec = rec

    def initial(self):
        return {}

    def scores(self, state, window):
        return self.rec.scores([window])[0]


class _MambaRecStep:
    """MambaRec.encode, one position at a time (eval mode: dropout is the identity)."""

    def __init__(self, rec):
        self.model = rec.model

    def initial(self):
        state = {}
        for i, block in enumerate(self.model.blocks):
            state[f"conv{i}"], state[f"ssm{i}"] = block.mixer.allocate_inference_cache(1, 1)
        return state

    def step(self, state, item, position):
        m = self.model
        x = m.item_embedding.weight[item].unsqueeze(0)
        if m.position_embedding is not None:
            x = x + m.position_embedding.weight[position]
        x = m.LayerNorm(x)
        for i, block in enumerate(m.blocks):
            x = block.step(x, state[f"conv{i}"], state[f"ssm{i}"])
        state["out"] = x[0]
        return state

    def scores(self, state, window):
        """The next-item head (as ``full_sort_predict``): the state's dot product with every item."""
        return state["out"] @ self.model.item_embedding.weight.T


class _MambaRecKernelStep(_MambaRecStep):
    """The same step in one call of the cpu backend's C kernel (``recbole_mamba_mambarec_step_f32``)
    per event: MambaRec with ``block_type: mamba``, no position embedding, float32 weights on the
    CPU, every mixer on the ``cpu`` backend. The states are the same tensors as the PyTorch
    stepper's, so saved sessions load under either."""

    @staticmethod
    def usable(model):
        from recbole_mamba.ops import scan_cpu

        cpu = torch.device("cpu")
        if model.position_embedding is not None or any(block.ffn is not None for block in model.blocks):
            return False
        if any(p.device != cpu or p.dtype != torch.float32 for p in model.parameters()):
            return False
        if any(block.mixer._backend_on(cpu) != "cpu" for block in model.blocks):
            return False
        try:
            scan_cpu.library()
        except scan_cpu.CpuKernelUnavailable:
            return False
        return True

    def __init__(self, rec):
        from recbole_mamba.ops import scan_cpu

        super().__init__(rec)
        m = self.model
        self._keep = []  # every tensor the arguments point at

        def ptr(t):
            if t is None:
                return None
            t = t.detach().contiguous()
            self._keep.append(t)
            return t.data_ptr()

        self._blocks = (scan_cpu.BlockStepArgs * len(m.blocks))()
        for i, block in enumerate(m.blocks):
            mixer = block.mixer
            dim = mixer.d_inner
            xz, y = torch.empty(2 * dim), torch.empty(dim)
            work = torch.empty(dim + mixer.dt_rank + 2 * mixer.d_state)
            self._keep += [xz, y, work]
            self._blocks[i] = scan_cpu.BlockStepArgs(
                in_w=ptr(mixer.in_proj.weight), in_b=ptr(mixer.in_proj.bias),
                mixer=scan_cpu.StepArgs(
                    1, dim, mixer.d_state, mixer.dt_rank, mixer.d_conv, xz.data_ptr(),
                    xz.data_ptr() + dim * xz.element_size(), None, ptr(mixer.conv1d.weight[:, 0, :]),
                    ptr(mixer.conv1d.bias), ptr(mixer.x_proj.weight), ptr(mixer.dt_proj.weight),
                    ptr(mixer.dt_proj.bias), ptr(mixer.A_log), ptr(mixer.D), None, y.data_ptr(), work.data_ptr(),
                ),
                out_w=ptr(mixer.out_proj.weight), out_b=ptr(mixer.out_proj.bias),
                norm_w=ptr(block.norm.weight), norm_b=ptr(block.norm.bias), eps=block.norm.eps,
                residual=int(block.residual),
            )
        h = torch.empty(m.hidden_size)
        self._keep.append(h)
        self._args = scan_cpu.ModelStepArgs(
            m.hidden_size, m.item_embedding.num_embeddings, len(m.blocks), ptr(m.item_embedding.weight),
            ptr(m.LayerNorm.weight), ptr(m.LayerNorm.bias), m.LayerNorm.eps, self._blocks, h.data_ptr(),
        )
        self._step = scan_cpu.library().recbole_mamba_mambarec_step_f32

    def check_state(self, state):
        """A loaded state must have the tensors the kernel writes, each of its shape and dtype:
        anything else would be read and written out of bounds."""
        for key, fresh in self.initial().items():
            got = state.get(key)
            if not (isinstance(got, torch.Tensor) and got.shape == fresh.shape and got.dtype == fresh.dtype):
                raise ServeError(f"saved session state {key!r} is not a {fresh.dtype} tensor of shape "
                                 f"{tuple(fresh.shape)}")
            state[key] = got.contiguous()

    def step(self, state, item, position):
        for i, block in enumerate(self._blocks):
            block.mixer.conv_state = state[f"conv{i}"].data_ptr()
            block.mixer.ssm_state = state[f"ssm{i}"].data_ptr()
        out = torch.empty(self.model.hidden_size)
        if self._step(self._args, item, out.data_ptr()):
            raise ServeError(f"item id {item} is not in the model's {self._args.n_items} items")
        state["out"] = out
        return state


class _RecMambaStep(_MambaRecStep):
    """RecMamba.encode, one position at a time."""

    def initial(self):
        conv, ssm = self.model.mixer.allocate_inference_cache(1, 1)
        return {"conv0": conv, "ssm0": ssm}

    def step(self, state, item, position):
        m = self.model
        x = m.item_embedding.weight[item] * math.sqrt(m.hidden_size) + m.position_embedding.weight[position]
        out, _, _ = m.mixer.step(x.view(1, 1, -1), state["conv0"], state["ssm0"])
        state["out"] = out[0, 0]
        return state


class _GRU4RecStep(_MambaRecStep):
    """RecBole's GRU4Rec.forward, one position at a time: its GRU's hidden state."""

    def initial(self):
        gru = self.model.gru_layers
        return {"gru": torch.zeros(gru.num_layers, 1, gru.hidden_size, device=self.model.item_embedding.weight.device)}

    def step(self, state, item, position):
        m = self.model
        out, state["gru"] = m.gru_layers(m.item_embedding.weight[item].view(1, 1, -1), state["gru"])
        state["out"] = m.dense(out[0, 0])
        return state


class _MoEMaTrRecStep(_MambaRecStep):
    """MoEMaTrRec.encode, one position at a time: per layer a key/value cache for the attention
    expert, the Mamba expert's states, and the running sum of inputs for the sequence gate."""

    def initial(self):
        state = {}
        for i, layer in enumerate(self.model.layers):
            att = layer.attention
            empty = torch.zeros(att.num_attention_heads, 0, att.attention_head_size, device=att.query.weight.device)
            state[f"keys{i}"], state[f"values{i}"] = empty, empty.clone()
            state[f"conv{i}"], state[f"ssm{i}"] = layer.mixer.allocate_inference_cache(1, 1)
            state[f"sum{i}"] = torch.zeros(self.model.hidden_size, device=empty.device)
        return state

    def step(self, state, item, position):
        m = self.model
        x = m.LayerNorm(m.item_embedding.weight[item] + m.position_embedding.weight[position]).unsqueeze(0)
        for i, layer in enumerate(m.layers):
            att = layer.attention
            heads = lambda t: t.view(att.num_attention_heads, 1, att.attention_head_size)  # noqa: E731
            state[f"keys{i}"] = torch.cat([state[f"keys{i}"], heads(att.key(x))], dim=1)
            state[f"values{i}"] = torch.cat([state[f"values{i}"], heads(att.value(x))], dim=1)
            scores = heads(att.query(x)) @ state[f"keys{i}"].transpose(1, 2) / att.sqrt_attention_head_size
            context = (scores.softmax(-1) @ state[f"values{i}"]).reshape(1, -1)
            attended = att.LayerNorm(att.dense(context) + x)
            h, _, _ = layer.mixer.step(x.unsqueeze(1), state[f"conv{i}"], state[f"ssm{i}"])
            mixed = layer.mixer_norm(x + h.squeeze(1))
            state[f"sum{i}"] = state[f"sum{i}"] + x[0]
            gate_input = state[f"sum{i}"] / (position + 1) if layer.gate.gate_type == "sequence" else x[0]
            weights = torch.softmax(layer.gate.proj(gate_input), dim=-1)
            x = layer.ffn(weights[0] * attended + weights[1] * mixed)
        state["out"] = x[0]
        return state


def _stepper(rec):
    from recbole_mamba.model import MambaRec, MoEMaTrRec, RecMamba
    from recbole_mamba.registry import recbole_sequential_models

    if type(rec.model) is MambaRec and _MambaRecKernelStep.usable(rec.model):
        return _MambaRecKernelStep(rec)
    kinds = {MambaRec: _MambaRecStep, RecMamba: _RecMambaStep, MoEMaTrRec: _MoEMaTrRecStep,
             recbole_sequential_models()["GRU4Rec"]: _GRU4RecStep}
    return kinds.get(type(rec.model), _Reencode)(rec)


class Session:
    """One user's live state (see the module docstring for the cost of each event by model).

    ``observe(token)`` adds an event; ``topk(k)`` ranks every item after the events so far;
    ``to_bytes()`` / ``Recommender.session_from_bytes`` keep it in any key-value store.
    """

    def __init__(self, rec):
        self.rec = rec
        self._stepper = _stepper(rec)
        self.recurrent = not isinstance(self._stepper, _Reencode)
        self.events = 0  # events observed
        self.window = []  # the ids the model reads; kept only where the context is a window
        self._state = self._stepper.initial()

    @torch.inference_mode()
    def observe_id(self, item):
        limit = self.rec.context_limit
        self.events += 1
        if limit is None:  # the recurrent state covers the whole history
            self._state = self._stepper.step(self._state, item, self.events - 1)
            return
        self.window = (self.window + [item])[-limit:]
        if not self.recurrent:
            return
        if self.events <= limit:
            self._state = self._stepper.step(self._state, item, self.events - 1)
        else:  # positions stop at the window: re-encode it
            self._state = self._stepper.initial()
            for position, past in enumerate(self.window):
                self._state = self._stepper.step(self._state, past, position)

    def observe(self, token):
        """Add one event (an external item token)."""
        (item,) = self.rec.ids_of([token])
        self.observe_id(item)

    @torch.inference_mode()
    def scores(self):
        """(n_items,) scores of every item after the events so far (padding: -inf)."""
        if not self.events:
            raise ServeError("empty session: observe at least one event before ranking")
        scores = self._stepper.scores(self._state, self.window).float()
        scores[0] = -torch.inf
        return scores

    def topk(self, k=10, exclude=()):
        """[(item token, score)] of the k best next items; ``exclude``: tokens to leave out."""
        return self.rec.top(self.scores(), k, self.rec.ids_of(exclude, unknown="skip") if exclude else ())

    def to_bytes(self):
        """The session as bytes (tensors and numbers only; loaded weights-only)."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "model": self.rec.name, "events": self.events,
                    "window": torch.tensor(self.window, dtype=torch.long),
                    "state": {k: v.cpu() for k, v in self._state.items()}}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, rec, data):
        try:
            saved = torch.load(io.BytesIO(data), map_location=rec.device, weights_only=True)
        except Exception as e:  # truncated or foreign bytes: torch raises several kinds
            raise ServeError(f"not a saved session: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ServeError("not a saved session of recbole-mamba")
        if saved["model"] != rec.name:
            raise ServeError(f"a session of {saved['model']}, not of {rec.name}")
        session = cls(rec)
        session.events = int(saved["events"])
        session.window = saved["window"].tolist()
        session._state = dict(saved["state"])
        if hasattr(session._stepper, "check_state"):
            session._stepper.check_state(session._state)
        return session
