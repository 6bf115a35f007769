"""A tenant's account records: its invoices (GET /v1/invoices, GET /v1/invoices/{id} (JSON)
and GET /v1/invoices/{id}.csv) and its audit log of saved voices (GET /v1/audit). Invoices are made when the operator closes a month
(`qtts admin close-period YYYY-MM`, serve_app.platform.invoices); another tenant's invoice
is 404, as a missing one. Keys scoped to `endpoint:usage` may read them.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from serve_app.platform.invoices import to_csv
from serve_app.routes.common import admission
from serve_app.routes.contract import errors

router = APIRouter(prefix="/v1", tags=["jobs and usage"])


@router.get("/invoices")
async def list_invoices(request: Request) -> dict:
    """The caller's tenant's invoices, newest month first."""
    gate = admission(request)
    found = await gate.platform.list_invoices(gate.request_caller().principal)
    return {"object": "list", "data": [i.as_dict() for i in found]}


@router.get("/invoices/{invoice_id}.csv", response_class=Response, responses={
    200: {"content": {"text/csv": {}}, "description": "The invoice's lines, then its total"},
    **errors(404)})
async def invoice_csv(invoice_id: str, request: Request) -> Response:
    gate = admission(request)
    invoice = await gate.platform.get_invoice(gate.request_caller().principal, invoice_id)
    return Response(to_csv(invoice), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{invoice.id}.csv"'})


@router.get("/invoices/{invoice_id}", responses=errors(404))
async def get_invoice(invoice_id: str, request: Request) -> dict:
    gate = admission(request)
    return (await gate.platform.get_invoice(gate.request_caller().principal,
                                            invoice_id)).as_dict()


@router.get("/audit")
async def audit_log(request: Request, limit: int = Query(100, ge=1, le=500),
                    voice: str | None = Query(None, max_length=40),
                    before: int | None = Query(None, ge=1)) -> dict:
    """The caller's tenant's audit log of its saved voices (created, used, deleted: which
    voice, when, from which API key, under which service key), newest first; `before`: an
    event id, for the next page. Never audio or text."""
    gate = admission(request)
    events = await gate.platform.audit_events(gate.request_caller().principal, limit=limit,
                                              voice_id=voice, before=before)
    return {"object": "list", "data": [e.as_dict() for e in events],
            "next_before": events[-1].id if len(events) == limit else None}
