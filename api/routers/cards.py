"""Cards for the operator, and for institution staff at the desk (temporary cards).

The operator manages every card. Institution staff issue temporary cards for their own
institution and may print, complete and see the cards their institution issued, nothing else
(rule 5). A signed-in holder fetches the code and images of their own cards under `/v1/me/`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from api import problems
from api.auth import CurrentStaff, OperatorAdmin
from api.deps import SessionDep, SettingsDep
from api.routers.keys import KeyStoreDep
from api.routers.members import MemberEmail
from api.schemas.cards import CardBlock, CardCodeRead, CardCreate, CardRead
from membership import cards, codes, images, photos
from membership.clock import utcnow
from membership.errors import NotFound
from membership.keys import KeyStore
from membership.models import Card
from membership.settings import Settings

router = APIRouter(tags=["cards"])

_PRIVATE = {"Cache-Control": "private, no-store"}


async def visible_card(card_id: uuid.UUID, session: SessionDep, principal: CurrentStaff) -> Card:
    """The card, if the caller may see it: the operator always, staff only their desk's cards."""
    card = await cards.get_card(session, card_id=card_id)
    principal.ensure_institution(card.issued_by_institution_id)
    return card


VisibleCard = Annotated[Card, Depends(visible_card)]


@dataclass(frozen=True)
class _Signed:
    key_id: str
    code: codes.CardCode
    text: str


def _signed(card: Card, settings: Settings, store: KeyStore) -> _Signed:
    """Signed at request time with the current key: a rotation needs no re-rendering job."""
    key_id, private_key = store.signing_key()
    code = cards.code_for(card, programme=settings.programme_code)
    return _Signed(key_id, code, codes.encode(code, private_key=private_key))


def _face(card: Card, text: str, settings: Settings) -> images.CardFace:
    assert card.membership is not None  # code_for refused cards without one
    return images.CardFace(
        programme_name=settings.programme_name,
        holder_name=card.member.full_name,
        product_name=card.membership.product.name,
        valid_until=cards.valid_until(card),
        card_number=card.number,
        code=text,
        photo=photos.resolve(settings.photo_dir, card.member.photo_path),
        temporary=card.visit_limit is not None,
    )


_RENDER = problems.responses(401, 403, 404, 409, 503)


@router.post(
    "/v1/cards",
    response_model=CardRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def issue_card(body: CardCreate, session: SessionDep, principal: OperatorAdmin) -> CardRead:
    """Issue the permanent card of a holder; one live card per holder and membership."""
    card = await cards.issue(
        session,
        membership_id=body.membership_id,
        member_id=body.member_id,
        actor=principal.actor,
        now=utcnow(),
    )
    return CardRead.of(card)


@router.post(
    "/v1/institutions/{institution_id}/temporary-cards",
    response_model=CardRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def issue_temporary_card(
    institution_id: uuid.UUID, body: CardCreate, session: SessionDep, principal: CurrentStaff
) -> CardRead:
    """A desk card: 31 days or 5 counted visits, until the holder registers with a photo."""
    card = await cards.issue_temporary(
        session,
        membership_id=body.membership_id,
        member_id=body.member_id,
        institution_id=institution_id,
        actor=principal.actor,
        now=utcnow(),
    )
    return CardRead.of(card)


@router.get(
    "/v1/cards/lookup", response_model=CardRead, responses=problems.responses(401, 403, 404)
)
async def lookup_card(
    number: Annotated[str, Query(min_length=1, max_length=40, examples=["4123 4567 8905"])],
    session: SessionDep,
    principal: OperatorAdmin,
) -> CardRead:
    """Find a card by its printed number; spaces and dashes are fine, a typo is a 422."""
    return CardRead.of(await cards.find_by_number(session, number=number))


@router.get(
    "/v1/cards/{card_id}", response_model=CardRead, responses=problems.responses(401, 403, 404)
)
async def get_card(card: VisibleCard) -> CardRead:
    return CardRead.of(card)


@router.post(
    "/v1/cards/{card_id}/block",
    response_model=CardRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def block_card(
    card_id: uuid.UUID, body: CardBlock, session: SessionDep, principal: OperatorAdmin
) -> CardRead:
    """Refuse the card everywhere at once; scanners learn it from the revocation feed."""
    card = await cards.block(
        session, card_id=card_id, reason=body.reason, actor=principal.actor, now=utcnow()
    )
    return CardRead.of(card)


@router.post(
    "/v1/cards/{card_id}/unblock",
    response_model=CardRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def unblock_card(
    card_id: uuid.UUID, session: SessionDep, principal: OperatorAdmin
) -> CardRead:
    card = await cards.unblock(session, card_id=card_id, actor=principal.actor, now=utcnow())
    return CardRead.of(card)


@router.post(
    "/v1/cards/{card_id}/lost",
    response_model=CardRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def report_lost(
    card_id: uuid.UUID, session: SessionDep, principal: OperatorAdmin
) -> CardRead:
    """Revoke the lost card at once; the answer is the replacement, with a new number."""
    card = await cards.report_lost(session, card_id=card_id, actor=principal.actor, now=utcnow())
    return CardRead.of(card)


@router.post(
    "/v1/cards/{card_id}/reissue",
    response_model=CardRead,
    responses=problems.responses(401, 403, 404, 409),
)
async def reissue_card(
    card_id: uuid.UUID, session: SessionDep, principal: OperatorAdmin
) -> CardRead:
    """Same number, next version: every code printed before is refused from now on."""
    card = await cards.reissue(session, card_id=card_id, actor=principal.actor, now=utcnow())
    return CardRead.of(card)


@router.post(
    "/v1/cards/{card_id}/complete-registration",
    response_model=CardRead,
    status_code=status.HTTP_201_CREATED,
    responses=problems.responses(401, 403, 404, 409),
)
async def complete_registration(
    card: VisibleCard, session: SessionDep, principal: CurrentStaff
) -> CardRead:
    """Swap a temporary card for the permanent one once the holder's photo is on file."""
    permanent = await cards.complete_registration(
        session, card_id=card.id, actor=principal.actor, now=utcnow()
    )
    return CardRead.of(permanent)


def _add_render_routes(prefix: str, card_dependency: Callable[..., Awaitable[Card]]) -> None:
    """The code and images of one card, for staff and for the holder, from one set of handlers.

    Codes are signed at request time with the current key: a rotation needs no re-rendering job.
    """
    visible = Depends(card_dependency)

    @router.get(f"{prefix}/code", response_model=CardCodeRead, responses=_RENDER)
    async def card_code(
        settings: SettingsDep, store: KeyStoreDep, response: Response, card: Card = visible
    ) -> CardCodeRead:
        signed = _signed(card, settings, store)
        code = signed.code
        response.headers.update(_PRIVATE)
        return CardCodeRead(
            text=signed.text,
            key_id=signed.key_id,
            card_number=code.card_number,
            card_version=code.card_version,
            valid_until=code.valid_until,
            product_code=code.product_code,
            temporary=code.temporary,
            qr_version=images.qr_version(signed.text),
        )

    @router.get(
        f"{prefix}/qr.png",
        response_class=Response,
        responses={**_RENDER, 200: {"content": {"image/png": {}}}},
    )
    async def card_qr_png(
        settings: SettingsDep, store: KeyStoreDep, card: Card = visible
    ) -> Response:
        text = _signed(card, settings, store).text
        return Response(images.qr_png(text), media_type="image/png", headers=_PRIVATE)

    @router.get(
        f"{prefix}/qr.svg",
        response_class=Response,
        responses={**_RENDER, 200: {"content": {"image/svg+xml": {}}}},
    )
    async def card_qr_svg(
        settings: SettingsDep, store: KeyStoreDep, card: Card = visible
    ) -> Response:
        text = _signed(card, settings, store).text
        return Response(images.qr_svg(text), media_type="image/svg+xml", headers=_PRIVATE)

    @router.get(
        f"{prefix}/card.png",
        response_class=Response,
        responses={**_RENDER, 200: {"content": {"image/png": {}}}},
    )
    async def card_png(settings: SettingsDep, store: KeyStoreDep, card: Card = visible) -> Response:
        """The CR80 card image (1011 by 638 px, 300 dpi) with photo, name, product and QR code."""
        text = _signed(card, settings, store).text
        return Response(
            images.card_png(_face(card, text, settings)), media_type="image/png", headers=_PRIVATE
        )

    @router.get(
        f"{prefix}/card.pdf",
        response_class=Response,
        responses={**_RENDER, 200: {"content": {"application/pdf": {}}}},
    )
    async def card_pdf(settings: SettingsDep, store: KeyStoreDep, card: Card = visible) -> Response:
        """The card as a one-page PDF the size of the card, for a card printer."""
        text = _signed(card, settings, store).text
        headers = {**_PRIVATE, "Content-Disposition": f'inline; filename="card-{card.number}.pdf"'}
        return Response(
            images.card_pdf(_face(card, text, settings)),
            media_type="application/pdf",
            headers=headers,
        )


async def own_card(card_id: uuid.UUID, session: SessionDep, email: MemberEmail) -> Card:
    """The signed-in holder's own card; anyone else's is not found, so ids reveal nothing."""
    card = await cards.get_card(session, card_id=card_id)
    if card.member.email != email:
        raise NotFound("No such card.")
    return card


_add_render_routes("/v1/cards/{card_id}", visible_card)
_add_render_routes("/v1/me/cards/{card_id}", own_card)


async def _read_limited(request: Request) -> bytes:
    """Stop reading at the limit: a huge upload must not be buffered whole before refusal."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > photos.MAX_BYTES:
            raise photos.PhotoTooLarge(reason="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def photo_holder(
    member_id: uuid.UUID, session: SessionDep, principal: CurrentStaff
) -> uuid.UUID:
    """The operator may set any photo; desk staff only a holder's their institution carded.

    That lets the desk complete a temporary card, and nothing more (rule 5).
    """
    if not principal.is_operator:
        await cards.ensure_issued_by(
            session, member_id=member_id, institution_id=principal.institution_id
        )
    return member_id


@router.put(
    "/v1/members/{member_id}/photo",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems.responses(401, 403, 404, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/webp": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def put_photo(
    member_id: Annotated[uuid.UUID, Depends(photo_holder)],
    data: Annotated[bytes, Depends(_read_limited)],
    session: SessionDep,
    settings: SettingsDep,
    principal: CurrentStaff,
) -> None:
    """The raw image as the body; its type is read from its content, never from headers."""
    await photos.set_photo(
        session,
        member_id=member_id,
        data=data,
        photo_dir=settings.photo_dir,
        actor=principal.actor,
    )
