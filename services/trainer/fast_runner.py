"""An RLlib env runner that steps the vector env with array code and hands RLlib the same episodes.

RLlib's `SingleAgentEnvRunner` spends ~70 µs of Python per env step (connectors that unbatch to
single items, `SingleAgentEpisode.add_env_step`, per-env callbacks), which caps sampling near
14k steps/s whatever the number of envs. `FastVecEnvRunner` overrides `_sample` only: per vector
step one forward pass, one batched action sample (and its log-prob) and one `env.step`, recorded
into [T, N] arrays; the episode chunks are built once at the end, as the base class returns them
(a done episode whole, a running one as a chunk that continues under the same id in the next
call, with the same lookback). Weight sync, state, metrics and the whole-episode mode
(`num_episodes`, e.g. evaluation) stay the base class's.

It stands in for the default connector pipelines only (no custom connectors, no stateful
module, no per-episode callbacks, Box observations) and for envs with gymnasium's next-step
autoreset; it says so at construction otherwise. Opt-in: `[env_runners] fast_sampler = true`.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import NDArray
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_runner import ENV_STEP_FAILURE
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.spaces.space_utils import clip_action, get_base_struct_from_space, unsquash_action

# The pieces RLlib puts in every single-agent pipeline; `_sample` below does their work in batch.
DEFAULT_ENV_TO_MODULE = {
    "AddObservationsFromEpisodesToBatch",
    "AddTimeDimToBatchAndZeroPad",
    "AddStatesFromEpisodesToBatch",
    "BatchIndividualItems",
    "NumpyToTensor",
}
DEFAULT_MODULE_TO_ENV = {
    "GetActions",
    "TensorToNumpy",
    "UnBatchToIndividualItems",
    "RemoveSingleTsTimeRankFromBatch",
    "NormalizeAndClipActions",
    "ListifyDataForVectorEnv",
}
EPISODE_HOOKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end")


class FastVecEnvRunner(SingleAgentEnvRunner):
    """`SingleAgentEnvRunner` whose timestep sampling is array-level over the vector env."""

    @override(SingleAgentEnvRunner)
    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self._check_supported()
        pieces = {type(c).__name__: c for c in cast(Any, self._module_to_env).connectors}
        clip = pieces.get("NormalizeAndClipActions")
        self._normalize = bool(clip and clip.normalize_actions)
        self._clip = bool(clip and clip.clip_actions)
        self._lookback_len = int(self.config.episode_lookback_horizon)

    def _check_supported(self) -> None:
        """Refuse, naming why, what the array loop would silently do differently."""
        problems = []
        custom = {type(c).__name__ for c in cast(Any, self._env_to_module).connectors} - DEFAULT_ENV_TO_MODULE
        custom |= {type(c).__name__ for c in cast(Any, self._module_to_env).connectors} - DEFAULT_MODULE_TO_ENV
        if custom:
            problems.append(f"custom connectors {sorted(custom)}")
        if self.module is not None and self.module.is_stateful():
            problems.append("a stateful (recurrent) module")
        hooked = [h for h in EPISODE_HOOKS if getattr(self.config, f"callbacks_{h}", None)]
        overridden = [
            h for cb in self._callbacks for h in EPISODE_HOOKS if getattr(type(cb), h) is not getattr(RLlibCallback, h)
        ]
        hooked += overridden
        if hooked:
            problems.append(f"episode callbacks {sorted(set(hooked))}")
        if self.env is not None:
            mode = self.env.unwrapped.metadata.get("autoreset_mode")
            if mode != gym.vector.AutoresetMode.NEXT_STEP:
                problems.append(f"autoreset mode {mode} (next-step expected)")
            if not isinstance(self.env.single_observation_space, gym.spaces.Box):
                problems.append(f"observation space {self.env.single_observation_space} (a Box expected)")
        if problems:
            raise ValueError(f"FastVecEnvRunner does not support {'; '.join(problems)}: use the default env runner")

    @override(SingleAgentEnvRunner)
    def _sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool,
        random_actions: bool = False,
        force_reset: bool = False,
    ) -> list[SingleAgentEpisode]:
        if num_timesteps is None:  # whole episodes from fresh resets: the base class's loop, then a reset here
            return super()._sample(num_episodes=num_episodes, explore=explore, random_actions=random_actions)
        if force_reset or self._needs_initial_reset:
            self._reset_all()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a forward pass over a few hundred rows: a thread pool's hand-offs cost more
        try:
            rollout = self._roll(num_timesteps, explore, random_actions)
        finally:
            torch.set_num_threads(threads)  # the learner (same process when there are no remote runners) keeps its
        if rollout is None:  # a failed env step, the env recreated: start over from fresh episodes
            self._reset_all()
            return self._sample(num_timesteps=num_timesteps, explore=explore, random_actions=random_actions)
        return self._episodes(*rollout)

    def _reset_all(self) -> None:
        self._ongoing_episodes_for_metrics.clear()  # chunks of episodes that will never end
        obs, infos = self._try_env_reset(seed=self._seed if self._needs_initial_reset else None, options=None)
        self._needs_initial_reset = False
        self._obs = np.asarray(obs)
        self._pending = np.zeros(self.num_envs, dtype=bool)  # ended on the last step: the next one restarts it
        self._ids = [uuid.uuid4().hex for _ in range(self.num_envs)]
        self._t = np.zeros(self.num_envs, dtype=np.int64)  # steps of each running episode so far
        self._head_info: list[dict[str, Any]] = list(infos)  # info of each env's current observation
        self._tail: list[dict[str, Any] | None] = [None] * self.num_envs  # lookback data of the next chunk

    def _roll(self, num_timesteps: int, explore: bool, random_actions: bool) -> tuple[Any, ...] | None:
        """Step all envs until `num_timesteps` transitions (restart steps don't count), as arrays [T, N]."""
        obs, times = [self._obs], [time.perf_counter()]
        actions: list[Any] = []
        rewards: list[Any] = []
        ends: list[Any] = []
        restarts: list[Any] = []
        extras: dict[str, list[Any]] = defaultdict(list)
        reset_infos: dict[tuple[int, int], dict[str, Any]] = {}
        ts = 0
        while ts < num_timesteps:
            out = self._act(obs[-1], explore, ts, random_actions)
            action = out.pop(Columns.ACTIONS)
            result = self._try_env_step(out.pop(Columns.ACTIONS_FOR_ENV, action))
            if result == ENV_STEP_FAILURE:
                return None
            next_obs, reward, terminated, truncated, infos = result
            restarting = self._pending
            for i in np.flatnonzero(restarting):
                reset_infos[len(actions), int(i)] = infos[i]
            ts += self.num_envs - int(restarting.sum())
            self._pending = np.logical_or(terminated, truncated)
            obs.append(np.asarray(next_obs))
            actions.append(action)
            rewards.append(np.asarray(reward, dtype=np.float64))
            ends.append(np.where(terminated, 1, np.where(truncated, 2, 0)).astype(np.int8))
            restarts.append(restarting)
            times.append(time.perf_counter())
            for key, value in out.items():
                extras[key].append(value)
            extras[WEIGHTS_SEQ_NO].append(np.full(self.num_envs, self._weights_seq_no, dtype=np.int64))
        self._obs = obs[-1]
        return ts, obs, actions, rewards, ends, restarts, extras, reset_infos, times

    def _act(self, obs: NDArray[Any], explore: bool, ts: int, random_actions: bool) -> dict[str, Any]:
        """What the default module-to-env pipeline yields for a batch of observations, in one pass."""
        env, module = cast(Any, self.env), cast(Any, self.module)
        if random_actions:
            return {Columns.ACTIONS: env.action_space.sample()}
        batch = {Columns.OBS: torch.from_numpy(np.asarray(obs)).to(self._device)}
        with torch.no_grad():
            if explore:
                runners = self.config.num_env_runners or 1
                t = (self.num_env_steps_sampled_lifetime // runners + ts) * runners  # as the base class counts
                out = dict(module.forward_exploration(batch, t=t))
                dist_cls = module.get_exploration_action_dist_cls()
            else:
                out = dict(module.forward_inference(batch))
                dist_cls = module.get_inference_action_dist_cls()
            if Columns.ACTIONS not in out:  # GetActions: sample the module's distribution
                dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
                if not explore:
                    dist = dist.to_deterministic()
                out[Columns.ACTIONS] = dist.sample()
                if Columns.ACTION_LOGP not in out:
                    out[Columns.ACTION_LOGP] = dist.logp(out[Columns.ACTIONS])
        out = cast(
            dict[str, Any], convert_to_numpy(out)
        )  # TensorToNumpy: int64 -> int32, float64 -> float32, as it does
        if self._normalize or self._clip:  # NormalizeAndClipActions, over the batch at once
            space = get_base_struct_from_space(env.single_action_space)
            fix = unsquash_action if self._normalize else clip_action
            out[Columns.ACTIONS_FOR_ENV] = fix(out[Columns.ACTIONS].copy(), space)
        return out

    def _episodes(
        self,
        ts: int,
        obs_rows: list[Any],
        action_rows: list[Any],
        reward_rows: list[Any],
        end_rows: list[Any],
        restart_rows: list[Any],
        extra_rows: dict[str, list[Any]],
        reset_infos: dict[tuple[int, int], dict[str, Any]],
        times: list[float],
    ) -> list[SingleAgentEpisode]:
        """Cut the [T, N] record into each env's episode chunks, as the base class would return them."""
        env_major = lambda rows: np.ascontiguousarray(np.swapaxes(np.stack(rows), 0, 1))  # noqa: E731
        steps = len(action_rows)
        obs, actions, rewards = env_major(obs_rows), env_major(action_rows), env_major(reward_rows)
        ends, restarts = env_major(end_rows), env_major(restart_rows)
        extras = {k: env_major(v) for k, v in extra_rows.items()}
        data = {"obs": obs, "actions": actions, "rewards": rewards, **extras}
        env: Any = self.env
        done, ongoing = [], []
        for i in range(self.num_envs):
            first = [] if steps and restarts[i, 0] else [0]  # obs rows where this call's chunks begin
            for s in [*first, *(np.flatnonzero(restarts[i]) + 1).tolist()]:
                if s > 0:  # a new episode, begun by the restart step before row s
                    self._ids[i], self._t[i], self._tail[i] = uuid.uuid4().hex, 0, None
                    self._head_info[i] = reset_infos[s - 1, i]
                stop = np.flatnonzero(ends[i, s:])
                e = s + int(stop[0]) + 1 if len(stop) else steps  # one past the chunk's last step
                end = int(ends[i, e - 1]) if len(stop) else 0
                tail = self._tail[i] or {"infos": []}
                lb = len(tail["infos"])
                infos = [*tail["infos"], self._head_info[i], *({} for _ in range(e - s))]
                chunk: dict[str, Any] = {k: v[i, s:e] for k, v in data.items() if k != "obs"}
                for k in chunk if lb else ():  # a key the lookback lacks (random actions before) gets none
                    chunk[k] = np.concatenate([tail[k], chunk[k]]) if k in tail else InfiniteLookbackBuffer(chunk[k])
                chunk["obs"] = np.concatenate([tail["obs"], obs[i, s : e + 1]]) if lb else obs[i, s : e + 1]
                episode = SingleAgentEpisode(
                    self._ids[i],
                    observations=chunk.pop("obs"),
                    observation_space=env.single_observation_space,
                    infos=infos,
                    actions=chunk.pop("actions"),
                    action_space=env.single_action_space,
                    rewards=chunk.pop("rewards"),
                    terminated=end == 1,
                    truncated=end == 2,
                    extra_model_outputs=chunk,
                    t_started=int(self._t[i]),
                    len_lookback_buffer=lb,
                )
                episode._start_time, episode._last_step_time = times[s], times[e]  # type: ignore[assignment]
                self._t[i] += e - s
                if end:
                    done.append(episode)
                elif self._t[i] > 0:  # (an episode restarted by the last step has no step yet)
                    if e > s:  # what `cut(len_lookback_buffer=...)` carries into the next chunk
                        n = min(self._lookback_len, e - s)
                        self._tail[i] = {k: v[i, e - n : e] for k, v in data.items()} | {"infos": infos[-n - 1 : -1]}
                        self._head_info[i] = infos[-1]
                    self._ongoing_episodes_for_metrics[episode.id_].append(episode)
                    ongoing.append(episode)
        self._done_episodes_for_metrics.extend(done)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=ts)
        self._increase_sampled_metrics(ts, len(done))
        return done + ongoing
