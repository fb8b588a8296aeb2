"""Admin endpoints: model reload, API keys, retraining from the stored feedback."""

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from gmtrouter.registry.checkpoint import read_config
from gmtrouter.serve.deps import ERRORS, Admin, Svc
from gmtrouter.serve.schemas import JobOut, KeyCreate, KeyCreated, KeyOut, ReloadOut, ReloadRequest, RetrainRequest
from gmtrouter.serve.service import Service
from gmtrouter.utils.env import TRAIN_DB_ENV

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _key_out(row: Any) -> KeyOut:
    return KeyOut(
        key_id=row.id, name=row.name, users=row.users, admin=row.admin, created=row.created, revoked=row.revoked
    )


@router.post("/reload", response_model=ReloadOut, responses=ERRORS)
async def reload(body: ReloadRequest, _who: Admin, service: Svc) -> ReloadOut:
    """Load another model in the background and swap it in atomically; requests in flight finish on the old."""
    await run_in_threadpool(read_config, body.model_dir)
    return ReloadOut(**await service.engine.reload(body.model_dir))


@router.post("/keys", response_model=KeyCreated, responses=ERRORS, status_code=201)
async def create_key(body: KeyCreate, _who: Admin, service: Svc) -> KeyCreated:
    """A new user, tenant or admin key; the key itself is in this answer only."""
    key_id, token = await run_in_threadpool(service.keys.create, body.users, body.admin, body.name)
    row = await run_in_threadpool(service.store.get_key, key_id)
    return KeyCreated(key=token, **_key_out(row).model_dump())


@router.get("/keys", response_model=list[KeyOut], responses=ERRORS)
async def list_keys(_who: Admin, service: Svc) -> list[KeyOut]:
    return [_key_out(row) for row in await run_in_threadpool(service.store.list_keys)]


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=ERRORS)
async def revoke_key(key_id: str, _who: Admin, service: Svc) -> KeyOut:
    if not await run_in_threadpool(service.keys.revoke, key_id):
        raise HTTPException(404, f"no active key '{key_id}'")
    return _key_out(await run_in_threadpool(service.store.get_key, key_id))


@router.post("/retrain", response_model=JobOut, responses=ERRORS, status_code=202)
async def retrain(body: RetrainRequest, _who: Admin, service: Svc) -> JobOut:
    """Train a new model on the stored feedback (plus `data`) in a separate process; reload it when done."""
    job = JobOut(job_id=uuid.uuid4().hex[:12], status="running", output=body.output)
    service.jobs[job.job_id] = job
    asyncio.get_running_loop().create_task(_run_retrain(service, job, body))
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job_id: str, _who: Admin, service: Svc) -> JobOut:
    if job_id not in service.jobs:
        raise HTTPException(404, f"no job '{job_id}'")
    return service.jobs[job_id]


async def _run_retrain(service: Service, job: JobOut, body: RetrainRequest) -> None:
    """`gmtrouter train --from-db` in a child process (training must not slow routing's process down)."""
    # The database URL (and any password in it) goes in the child's environment, which only its own user can
    # read, not on its command line, which every user of the machine can list.
    args = [sys.executable, "-m", "gmtrouter", "train", "-o", body.output]
    env = {**os.environ, TRAIN_DB_ENV: service.config.db}
    if body.data:
        args += ["--data", body.data]
    for key, value in body.settings.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    args += ["--set", "progress=false"]
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
        output, _ = await process.communicate()
        job.returncode = process.returncode
        job.log_tail = output.decode(errors="replace")[-2000:]
        job.status = "succeeded" if process.returncode == 0 else "failed"
        if job.status == "succeeded" and body.reload:
            await service.engine.reload(Path(body.output))
            job.reloaded = True
    except Exception as error:  # a failed job reports why; the service goes on
        job.status, job.log_tail = "failed", f"{job.log_tail}\n{error}".strip()
