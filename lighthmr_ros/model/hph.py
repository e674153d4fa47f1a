"""HPH ("Human Perception Head"): a small cross-attention decoder with one query per person.

Each detected person's query is its own token feature (plus camera embedding and a learned
row/column embedding) concatenated with the mean body parameters. Queries of one image attend
to each other (self-attention: people explain each other's occlusions) and to all tokens of the
image (cross-attention), then linear decoders add residuals to the mean rotations (6D), shape,
expression and camera (distance) values.

Module and parameter names follow naver/multi-hmr so that official weights load unchanged.
"""

from __future__ import annotations

import warnings

import roma
import torch
import torch.nn.functional as F
from torch import nn


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3): the two 3-vectors are the first two columns, then Gram-Schmidt."""
    cols = x.reshape(*x.shape[:-1], 2, 3).transpose(-1, -2)
    return roma.special_gramschmidt(cols.float())


def rotmat_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rot6d_to_rotmat`: (..., 3, 3) -> (..., 6) = [column 0, column 1]."""
    return R[..., :, :2].transpose(-1, -2).reshape(*R.shape[:-2], 6)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class SelfAttention(nn.Module):
    """Attention among the person queries of one image; padded queries are masked out as keys."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class CrossAttention(nn.Module):
    """Person queries attend to every image token (tokens and camera embedding).

    With fewer queries than ``dim_head`` (the usual case: a few people, N of 144-2304 tokens) the
    key and value projections are folded into the queries, q.(W_k c) = (W_k^T q).c and
    a.(W_v c) = W_v (a.c), so the N x heads*dim_head keys and values are never computed: the same
    result (to float rounding) for 3-4x less time per layer at 448-672 px.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_kv = nn.Linear(context_dim, heads * dim_head * 2, bias=False)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.to_q(x).reshape(b, n, self.heads, -1)  # (b, n, h, d)
        d = q.shape[-1]
        if n < d:  # folded projections (see class docstring)
            w_k, w_v = self.to_kv.weight.reshape(2, self.heads, d, -1).to(q.dtype)  # (h, d, C) each
            q_c = (q.transpose(1, 2) @ w_k).reshape(
                b, self.heads * n, -1
            ) * d**-0.5  # (b, h*n, C): scaled queries in context space
            attn = torch.softmax(q_c @ context.transpose(1, 2).to(q_c.dtype), dim=-1)  # (b, h*n, N)
            mixed = (attn @ context.to(attn.dtype)).reshape(b, self.heads, n, -1)  # (b, h, n, C)
            out = (mixed @ w_v.transpose(1, 2).to(mixed.dtype)).transpose(1, 2).reshape(b, n, -1)  # (b, n, h*d)
            return self.to_out(out)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttnLayers(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, context_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, SelfAttention(dim, heads, dim_head)),
                    PreNorm(dim, CrossAttention(dim, context_dim, heads, dim_head)),
                    PreNorm(dim, FeedForward(dim, mlp_dim)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        for self_attn, cross_attn, ff in self.layers:
            x = self_attn(x, key_mask=key_mask) + x
            x = cross_attn(x, context=context) + x
            x = ff(x) + x
        return x


class QueryDecoder(nn.Module):
    """Token embedding + one shared learned position + the attention layers."""

    def __init__(self, token_dim: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, context_dim: int):
        super().__init__()
        self.to_token_embedding = nn.Linear(token_dim, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, 1, dim))
        self.transformer = CrossAttnLayers(dim, depth, heads, dim_head, mlp_dim, context_dim)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.to_token_embedding(tokens) + self.pos_embedding[:, 0][:, None, :]
        return self.transformer(x, context, key_mask)


class HPH(nn.Module):
    """Cross-attention regression head.

    Args:
        init_pose: (J, 6) mean 6D rotations (read as two columns), init_shape (S,), init_cam (3,).
        grid: token grid side (learned row/column query and value embeddings).
        kid_betas: keep upstream's unused ``init_betas_kid`` buffer (teacher checkpoints have it).
    """

    def __init__(
        self,
        init_pose: torch.Tensor,
        init_shape: torch.Tensor,
        init_cam: torch.Tensor,
        num_expression: int,
        context_dim: int,
        grid: int,
        dim: int = 1024,
        depth: int = 2,
        heads: int = 8,
        dim_head: int = 32,
        mlp_dim: int = 1024,
        kid_betas: bool = False,
    ):
        super().__init__()
        self.num_joints = init_pose.shape[0]
        self.num_shape = init_shape.shape[0]
        self.num_expression = num_expression
        npose = 6 * self.num_joints
        self.transformer = QueryDecoder(
            npose + self.num_shape + 3 + context_dim, dim, depth, heads, dim_head, mlp_dim, context_dim
        )
        self.decpose = nn.Linear(dim, npose)
        self.decshape = nn.Linear(dim, self.num_shape)
        self.deccam = nn.Linear(dim, 3)
        with warnings.catch_warnings():  # E = 0 (Anny): an empty layer, initialising it warns
            warnings.simplefilter("ignore", UserWarning)
            self.decexpression = nn.Linear(dim, num_expression)
        self.register_buffer("init_body_pose", init_pose.reshape(1, npose).float().clone())
        self.register_buffer("init_betas", init_shape.reshape(1, -1).float().clone())
        if kid_betas:
            self.register_buffer("init_betas_kid", torch.cat([self.init_betas, torch.zeros(1, 1)], dim=1))
        self.register_buffer("init_cam", init_cam.reshape(1, 3).float().clone())
        self.register_buffer("init_expression", torch.zeros(1, num_expression))
        for name in ("cross_queries_x", "cross_queries_y", "cross_values_x", "cross_values_y"):
            setattr(self, name, nn.Parameter(torch.randn(grid, context_dim) * 0.2))

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        batch_index: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Decode P persons.

        Args:
            queries: (P, C) per-person token features (with camera embedding).
            context: (B, N, C) all tokens of every image (N = grid*grid, raster order).
            batch_index, rows, cols: (P,) image index and token cell of each person.
        Returns: dict of (P, ...) tensors: rotmat (P, J, 3, 3), shape, expression, cam, token_out.
        """
        P = queries.shape[0]
        B, N, C = context.shape
        grid_w = self.cross_queries_y.shape[0]
        queries = queries + self.cross_queries_x[rows] + self.cross_queries_y[cols]
        # Learned value embeddings at every detected cell of the same image.
        values = self.cross_values_x[rows] + self.cross_values_y[cols]
        context = context.index_put((batch_index, rows * grid_w + cols), values.to(context.dtype), accumulate=True)

        # Pad queries to (B, M, C) with a key mask; slot = rank of the person within its image.
        counts = torch.bincount(batch_index, minlength=B)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(P, device=queries.device) - starts[batch_index]
        M = int(counts.max()) if P else 0
        means = [self.init_body_pose, self.init_betas, self.init_cam]
        token = torch.cat([queries] + [m.expand(P, -1).to(queries.dtype) for m in means], dim=-1)
        padded = token.new_zeros(B, M, token.shape[-1])
        padded[batch_index, slot] = token
        mask = torch.zeros(B, M, dtype=torch.bool, device=token.device)
        mask[batch_index, slot] = True
        # Only images with at least one person go through the decoder.
        has = counts > 0
        out = self.transformer(padded[has], context[has], mask[has])
        image_row = torch.cumsum(has.long(), 0) - 1
        token_out = out[image_row[batch_index], slot]  # (P, dim)

        pose6d = self.decpose(token_out) + self.init_body_pose
        return {
            "rotmat": rot6d_to_rotmat(pose6d.reshape(P, self.num_joints, 6)),
            "shape": self.decshape(token_out) + self.init_betas,
            "expression": self.decexpression(token_out) + self.init_expression,
            "cam": self.deccam(token_out) + self.init_cam,
            "token_out": token_out,
        }
