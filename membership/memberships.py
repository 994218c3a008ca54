"""Buying, paying for, renewing and refunding memberships: DESIGN.md rule 3.

A paid checkout gives exactly one term whatever order and however often the provider's events
and the browser's return arrive. `apply_payment` locks the payment row, re-reads its status and
only then adds the term; the unique `membership_terms.payment_id` (and `receipts.payment_id`)
stand behind the lock, so even a path that forgot the lock cannot add a second term.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from membership import audit, cards, members, outbox, renewals
from membership.audit import Actor
from membership.clock import local_date
from membership.errors import Conflict, InvalidValue, NotFound
from membership.models import (
    LIVE_CARD_STATUSES,
    Card,
    CardStatus,
    Member,
    Membership,
    MembershipStatus,
    MembershipTerm,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    Receipt,
    TermKind,
    TermStatus,
)
from membership.payments.provider import CheckoutRequest, CheckoutState, PaymentProvider
from membership.settings import Settings

PAYMENTS_ACTOR = Actor(label="payments")
MEMBER_ACTOR = Actor(label="member")
_REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_APPLIED = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
# Why the cards of a membership whose current term was refunded, with a later term paid, are
# blocked; `end_refund_gaps` unblocks exactly these when the later term starts.
REFUND_GAP = "current term refunded; a later paid term follows"


class ProductNotFound(NotFound):
    code = "product-not-found"
    title = "No product on sale has this code"


class HolderCountInvalid(InvalidValue):
    code = "holder-count-invalid"
    title = "The product is not sold for this number of holders"


class AgeOutsideLimits(InvalidValue):
    code = "age-outside-limits"
    title = "A holder's age at the start of validity is outside the product's limits"


class AutoRenewNotAllowed(InvalidValue):
    code = "auto-renew-not-allowed"
    title = "This product cannot renew automatically"


class PaymentNotFound(NotFound):
    code = "payment-not-found"
    title = "No payment has this id"


class PaymentNotRefundable(Conflict):
    code = "payment-not-refundable"
    title = "Only a received payment can be refunded"


class RefundTooLarge(InvalidValue):
    code = "refund-too-large"
    title = "The refund is larger than what is left of the payment"


@dataclass(frozen=True)
class PurchaseResult:
    membership: Membership
    payment: Payment
    checkout_url: str


@dataclass(frozen=True)
class AppliedPayment:
    payment: Payment
    term: MembershipTerm | None
    # False when an earlier call had applied it already: the caller changed nothing.
    applied_now: bool


def new_reference(programme_code: str) -> str:
    """A short reference a member can read out on the phone; random, so not enumerable."""
    return programme_code + "-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(10))


def vat_included(amount_minor: int, vat_rate_bp: int) -> int:
    """The VAT inside a VAT-inclusive amount, rounded half up to the minor unit."""
    divisor = 10_000 + vat_rate_bp
    return (2 * amount_minor * vat_rate_bp + divisor) // (2 * divisor)


def check_holders(
    product: Product, holders: Sequence[members.HolderDetails], *, starts_on: date
) -> None:
    """The product's holder count and age limits, the ages taken on the first day of validity."""
    if not product.min_holders <= len(holders) <= product.max_holders:
        raise HolderCountInvalid(
            min_holders=product.min_holders, max_holders=product.max_holders, given=len(holders)
        )
    for index, holder in enumerate(holders):
        age = members.age_on(holder.birth_date, starts_on)
        too_young = product.min_age is not None and age < product.min_age
        too_old = product.max_age is not None and age > product.max_age
        if too_young or too_old:
            raise AgeOutsideLimits(
                holder=index, min_age=product.min_age, max_age=product.max_age, age=age
            )


async def purchase(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    settings: Settings,
    product_code: str,
    holders: Sequence[members.HolderDetails],
    marketing_opt_in: bool,
    share_contact: bool,
    auto_renew: bool,
    now: datetime,
) -> PurchaseResult:
    """Members, a `pending_payment` membership and a payment at the server's price; a checkout.

    Nothing is active until the provider says the money arrived (`apply_payment`).
    """
    product = await session.scalar(
        select(Product).where(Product.code == product_code, Product.active.is_(True))
    )
    if product is None:
        raise ProductNotFound(product=product_code)
    if auto_renew and not product.auto_renew_allowed:
        raise AutoRenewNotAllowed()
    check_holders(product, holders, starts_on=local_date(now, settings.programme_timezone))
    people = [
        await members.create_member(
            session,
            details=holder,
            marketing_opt_in=marketing_opt_in,
            share_contact=share_contact,
            now=now,
        )
        for holder in holders
    ]
    membership = Membership(
        product_id=product.id,
        status=MembershipStatus.PENDING_PAYMENT,
        auto_renew=auto_renew,
        holders=people,
    )
    session.add(membership)
    await session.flush()
    return await _checkout(
        session,
        provider=provider,
        settings=settings,
        membership=membership,
        product=product,
        kind=PaymentKind.PURCHASE,
        customer_email=people[0].email,
        auto_renew=auto_renew,
    )


async def _checkout(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    settings: Settings,
    membership: Membership,
    product: Product,
    kind: PaymentKind,
    customer_email: str | None,
    auto_renew: bool,
) -> PurchaseResult:
    """A pending payment at the product's price and the provider's checkout (or subscription)."""
    payment = Payment(
        id=uuid.uuid4(),
        reference=new_reference(settings.programme_code),
        membership_id=membership.id,
        kind=kind,
        status=PaymentStatus.PENDING,
        provider=provider.name,
        amount_minor=product.price_minor,
        currency=product.currency,
        vat_rate_bp=product.vat_rate_bp,
    )
    session.add(payment)
    await session.flush()
    request = CheckoutRequest(
        payment_id=str(payment.id),
        reference=payment.reference,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        description=product.name,
        customer_email=customer_email,
        success_url=f"{settings.base_url}/v1/purchases/{payment.id}/return",
        cancel_url=f"{settings.base_url}/v1/purchases/{payment.id}/return?cancelled=true",
        renew_every_months=product.validity_months if auto_renew else None,
    )
    if auto_renew:
        checkout = await provider.start_subscription(request)
    else:
        checkout = await provider.create_checkout(request)
    payment.provider_checkout_id = checkout.checkout_id
    await session.flush()
    return PurchaseResult(membership=membership, payment=payment, checkout_url=checkout.url)


async def get_payment(session: AsyncSession, *, payment_id: uuid.UUID) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFound(payment_id=str(payment_id))
    return payment


async def find_payment(
    session: AsyncSession,
    *,
    provider: str,
    checkout_id: str | None = None,
    provider_payment_id: str | None = None,
) -> Payment | None:
    query = select(Payment).where(Payment.provider == provider)
    if checkout_id is not None:
        query = query.where(Payment.provider_checkout_id == checkout_id)
    elif provider_payment_id is not None:
        query = query.where(Payment.provider_payment_id == provider_payment_id)
    else:
        raise ValueError("give a checkout id or a payment id")
    return await session.scalar(query)


async def _lock_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    """The payment row, locked until commit: the second of two racing appliers waits here and
    then sees the first one's result (SQLite has one writer at a time anyway)."""
    payment = await session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        raise PaymentNotFound(payment_id=str(payment_id))
    return payment


async def load_membership(session: AsyncSession, *, membership_id: uuid.UUID) -> Membership:
    membership = await session.scalar(
        select(Membership)
        .where(Membership.id == membership_id)
        .options(
            selectinload(Membership.product),
            selectinload(Membership.holders),
            selectinload(Membership.terms),
        )
        .execution_options(populate_existing=True)
    )
    if membership is None:
        raise NotFound("No such membership.", membership_id=str(membership_id))
    return membership


def paid_until(membership: Membership) -> date | None:
    """The end of the last term still standing (refunded and cancelled terms do not count)."""
    ends = [term.ends_on for term in membership.terms if term.status == TermStatus.ACTIVE]
    return max(ends) if ends else None


def paid_again_on(membership: Membership, *, today: date) -> date | None:
    """The first day of the next paid term when none covers `today`: the gap a refunded
    current term leaves before a later paid one, shown to the member (None without a gap)."""
    if any(term.covers(today) for term in membership.terms):
        return None
    later = [
        term.starts_on
        for term in membership.terms
        if term.status == TermStatus.ACTIVE and term.starts_on > today
    ]
    return min(later) if later else None


async def apply_payment(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    provider_payment_id: str | None,
    subscription_id: str | None,
    settings: Settings,
    now: datetime,
) -> AppliedPayment:
    """Turn received money into exactly one term, the cards, a receipt and the e-mails.

    Called by the webhook processor and by the browser's return page, in either order or at the
    same instant: whoever takes the lock first applies it; the other finds it applied and
    changes nothing.
    """
    payment = await _lock_payment(session, payment_id)
    if payment.status in _APPLIED:
        term = await session.scalar(
            select(MembershipTerm).where(MembershipTerm.payment_id == payment.id)
        )
        return AppliedPayment(payment=payment, term=term, applied_now=False)
    if payment.kind == PaymentKind.REFUND:
        raise Conflict("A refund is not applied to a membership.")
    membership = await load_membership(session, membership_id=payment.membership_id)
    product = membership.product
    today = local_date(now, settings.programme_timezone)
    current_end = paid_until(membership)
    if current_end is None:
        dates = renewals.first_term(today=today, validity_months=product.validity_months)
    else:
        dates = renewals.renewal_term(
            today=today,
            current_end=current_end,
            grace_days=product.grace_days,
            validity_months=product.validity_months,
        )
    term = MembershipTerm(
        membership_id=membership.id,
        starts_on=dates.starts_on,
        ends_on=dates.ends_on,
        kind=TermKind.PURCHASE if payment.kind == PaymentKind.PURCHASE else TermKind.RENEWAL,
        payment_id=payment.id,
    )
    session.add(term)
    payment.status = PaymentStatus.SUCCEEDED
    payment.paid_at = now
    if provider_payment_id and payment.provider_payment_id is None:
        payment.provider_payment_id = provider_payment_id
    membership.status = MembershipStatus.ACTIVE
    if subscription_id:
        membership.provider_subscription_id = subscription_id
    receipt = Receipt(
        payment_id=payment.id,
        membership_id=membership.id,
        reference=payment.reference,
        description=product.name,
        amount_minor=payment.amount_minor,
        vat_minor=vat_included(payment.amount_minor, payment.vat_rate_bp),
        vat_rate_bp=payment.vat_rate_bp,
        currency=payment.currency,
        issued_on=today,
    )
    session.add(receipt)
    await session.flush()
    issued = await _issue_missing_cards(session, membership=membership, now=now)
    await _mail_after_payment(
        session,
        membership=membership,
        payment=payment,
        term=term,
        receipt=receipt,
        cards_by_member=issued,
        now=now,
    )
    await audit.record(
        session,
        actor=PAYMENTS_ACTOR,
        action="payment.apply",
        entity_type="payment",
        entity_id=payment.id,
        changes={
            "term": [term.starts_on.isoformat(), term.ends_on.isoformat()],
            "amount_minor": payment.amount_minor,
        },
    )
    return AppliedPayment(payment=payment, term=term, applied_now=True)


async def _issue_missing_cards(
    session: AsyncSession, *, membership: Membership, now: datetime
) -> dict[uuid.UUID, Card]:
    """A card for every holder without a live one (a renewal keeps the cards it has)."""
    live = {
        card.member_id: card
        for card in await session.scalars(
            select(Card).where(
                Card.membership_id == membership.id, Card.status.in_(LIVE_CARD_STATUSES)
            )
        )
    }
    for holder in membership.holders:
        # An erased holder gets no new card: a renewal paid by a co-holder must not bring back
        # a card, and with it visits, for a person who is gone (membership.erasure).
        if holder.id not in live and holder.erased_at is None:
            live[holder.id] = await cards.issue(
                session,
                membership_id=membership.id,
                member_id=holder.id,
                actor=PAYMENTS_ACTOR,
                now=now,
            )
    return live


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


async def _mail_after_payment(
    session: AsyncSession,
    *,
    membership: Membership,
    payment: Payment,
    term: MembershipTerm,
    receipt: Receipt,
    cards_by_member: dict[uuid.UUID, Card],
    now: datetime,
) -> None:
    template = "welcome" if payment.kind == PaymentKind.PURCHASE else "renewed"
    for holder in membership.holders:
        card = cards_by_member.get(holder.id)
        await outbox.enqueue(
            session,
            dedup_key=f"{template}:{payment.id}:{holder.id}",
            member=holder,
            template=template,
            context={
                "first_name": holder.first_name,
                "product": membership.product.name,
                "starts_on": term.starts_on.isoformat(),
                "ends_on": term.ends_on.isoformat(),
                "card_id": str(card.id) if card else None,
                "card_number": card.number if card else None,
                "reference": receipt.reference,
                "amount": _money(receipt.amount_minor, receipt.currency),
                "vat": _money(receipt.vat_minor, receipt.currency),
                "vat_rate_bp": receipt.vat_rate_bp,
                "paid_on": receipt.issued_on.isoformat(),
            },
            now=now,
        )


async def confirm_with_provider(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    payment_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> tuple[Payment, Membership]:
    """The browser's return: ask the provider rather than wait for its webhook.

    Whichever of this and the webhook comes first applies the payment; the other finds it
    applied (`apply_payment`), so the visitor sees the result at once and nothing doubles.
    """
    payment = await get_payment(session, payment_id=payment_id)
    if payment.status == PaymentStatus.PENDING and payment.provider_checkout_id:
        status = await provider.checkout_status(payment.provider_checkout_id)
        if status.state == CheckoutState.PAID:
            await apply_payment(
                session,
                payment_id=payment.id,
                provider_payment_id=status.provider_payment_id,
                subscription_id=status.subscription_id,
                settings=settings,
                now=now,
            )
        elif status.state in (CheckoutState.EXPIRED, CheckoutState.FAILED):
            await mark_payment_failed(
                session, payment_id=payment.id, status=PaymentStatus.CANCELLED
            )
    membership = await load_membership(session, membership_id=payment.membership_id)
    return await get_payment(session, payment_id=payment_id), membership


async def mark_payment_failed(
    session: AsyncSession, *, payment_id: uuid.UUID, status: PaymentStatus
) -> Payment:
    """A declined or abandoned checkout; a payment already received is never undone here."""
    payment = await _lock_payment(session, payment_id)
    if payment.status == PaymentStatus.PENDING:
        payment.status = status
        await session.flush()
    return payment


@dataclass(frozen=True)
class BookedRefund:
    refund: Payment
    # The provider subscription to cancel: the refund ended the membership, and a refunded
    # membership must not be charged again at the next period.
    cancel_subscription: str | None


async def record_refund(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    refunded_total_minor: int,
    provider_refund_id: str,
    reason: str,
    actor: Actor,
    timezone: str,
    now: datetime,
) -> BookedRefund | None:
    """Bring our books to `refunded_total_minor`; a refund already booked changes nothing.

    Taking the provider's running total (not an increment) makes the operator's own refund and
    the `charge.refunded` event that echoes it one refund, not two. A full refund ends the term
    that payment bought (a purchase or any renewal); when no other paid term still runs after
    today, it ends the membership and blocks its cards at once.
    """
    payment = await _lock_payment(session, payment_id)
    if payment.status not in _APPLIED:
        raise PaymentNotRefundable(payment_status=payment.status.value)
    if refunded_total_minor > payment.amount_minor:
        raise RefundTooLarge(refundable_minor=payment.amount_minor - payment.refunded_minor)
    amount = refunded_total_minor - payment.refunded_minor
    if amount <= 0:
        return None
    refund = Payment(
        id=uuid.uuid4(),
        reference=payment.reference[:22] + "-R" + str(refunded_total_minor)[-8:],
        membership_id=payment.membership_id,
        kind=PaymentKind.REFUND,
        status=PaymentStatus.SUCCEEDED,
        provider=payment.provider,
        provider_payment_id=provider_refund_id,
        amount_minor=amount,
        currency=payment.currency,
        vat_rate_bp=payment.vat_rate_bp,
        paid_at=now,
        refund_of_id=payment.id,
        refund_reason=reason[:300],
    )
    session.add(refund)
    payment.refunded_minor = refunded_total_minor
    full = refunded_total_minor == payment.amount_minor
    payment.status = PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED
    await session.flush()
    cancel = None
    if full:
        cancel = await _end_refunded_term(
            session, payment=payment, actor=actor, today=local_date(now, timezone), now=now
        )
    await audit.record(
        session,
        actor=actor,
        action="payment.refund",
        entity_type="payment",
        entity_id=payment.id,
        changes={"amount_minor": amount, "refunded_minor": refunded_total_minor, "reason": reason},
    )
    return BookedRefund(refund=refund, cancel_subscription=cancel)


async def _end_refunded_term(
    session: AsyncSession, *, payment: Payment, actor: Actor, today: date, now: datetime
) -> str | None:
    """End the refunded payment's term; end the membership when nothing paid runs on.

    A refunded early renewal leaves the current term running to its end. A refunded current
    term (the first one, or a renewal already under way) blocks the cards now rather than at
    the next job pass: for good when no paid day follows today, else until the later paid
    term starts. Returns the subscription the caller cancels at the provider.
    """
    membership = await load_membership(session, membership_id=payment.membership_id)
    for term in membership.terms:
        if term.payment_id == payment.id:
            term.status = TermStatus.REFUNDED
    remaining = paid_until(membership)
    if remaining is not None and remaining > today:
        if not any(term.covers(today) for term in membership.terms):
            # The current term went, a paid one lies ahead: nobody paid for today. Blocked
            # cards reach offline scanners through the revocation feed, which a code's
            # valid-until date (the end of the later term) cannot; `end_refund_gaps` unblocks
            # them when the later term starts.
            await _block_live_cards(
                session, membership_id=membership.id, reason=REFUND_GAP, actor=actor, now=now
            )
        await session.flush()
        return None
    membership.status = MembershipStatus.REFUNDED
    cancel = membership.provider_subscription_id if membership.auto_renew else None
    membership.auto_renew = False
    await session.flush()
    await _block_live_cards(
        session, membership_id=membership.id, reason="refunded", actor=actor, now=now
    )
    return cancel


async def _block_live_cards(
    session: AsyncSession, *, membership_id: uuid.UUID, reason: str, actor: Actor, now: datetime
) -> None:
    live = await session.scalars(
        select(Card.id).where(
            Card.membership_id == membership_id, Card.status.in_(LIVE_CARD_STATUSES)
        )
    )
    for card_id in list(live):
        await cards.block(session, card_id=card_id, reason=reason, actor=actor, now=now)


async def end_refund_gaps(
    session: AsyncSession, *, today: date, actor: Actor, now: datetime
) -> list[uuid.UUID]:
    """Unblock the cards a refunded current term blocked, once a paid term covers `today`.

    Only cards blocked for that reason (`REFUND_GAP`) on a membership still running: a card
    staff blocked (lost, misuse) stays blocked, and so does one whose holder was issued a new
    card meanwhile (a renewal paid during the gap issues one). Concurrent job runners skip the
    rows another one holds, so each card is unblocked, and fed to scanners, once.
    """
    covered = exists().where(
        MembershipTerm.membership_id == Card.membership_id,
        MembershipTerm.status == TermStatus.ACTIVE,
        MembershipTerm.starts_on <= today,
        MembershipTerm.ends_on > today,
    )
    due = await session.scalars(
        select(Card.id)
        .join(Membership, Membership.id == Card.membership_id)
        .where(
            Card.status == CardStatus.BLOCKED,
            Card.status_reason == REFUND_GAP,
            Membership.status.in_((MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE)),
            covered,
        )
        .order_by(Card.id)
        .with_for_update(of=Card, skip_locked=True)
    )
    unblocked = []
    for card_id in list(due):
        try:
            await cards.unblock(session, card_id=card_id, actor=actor, now=now)
        except cards.CardAlreadyIssued:
            continue
        unblocked.append(card_id)
    return unblocked


async def refund(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    payment_id: uuid.UUID,
    amount_minor: int,
    reason: str,
    actor: Actor,
    timezone: str,
    now: datetime,
) -> Payment:
    """An operator's refund, full or partial: money back at the provider, then our books.

    The idempotency key names the running total after this refund, so a retried request
    cannot refund twice at the provider.
    """
    payment = await _lock_payment(session, payment_id)
    if payment.status not in _APPLIED or payment.provider_payment_id is None:
        raise PaymentNotRefundable(payment_status=payment.status.value)
    if amount_minor <= 0 or amount_minor > payment.amount_minor - payment.refunded_minor:
        raise RefundTooLarge(refundable_minor=payment.amount_minor - payment.refunded_minor)
    total = payment.refunded_minor + amount_minor
    done = await provider.refund(
        provider_payment_id=payment.provider_payment_id,
        amount_minor=amount_minor,
        idempotency_key=f"refund:{payment.id}:{total}",
    )
    booked = await record_refund(
        session,
        payment_id=payment.id,
        refunded_total_minor=total,
        provider_refund_id=done.refund_id,
        reason=reason,
        actor=actor,
        timezone=timezone,
        now=now,
    )
    assert booked is not None  # the lock is held: nobody booked this total meanwhile
    if booked.cancel_subscription:
        await provider.cancel_subscription(booked.cancel_subscription)
    return booked.refund


class MembershipNotRenewable(Conflict):
    code = "membership-not-renewable"
    title = "This membership cannot be renewed in its current state"


_RENEWABLE = (MembershipStatus.ACTIVE, MembershipStatus.IN_GRACE, MembershipStatus.EXPIRED)


def _holds(email: str) -> Any:
    return Membership.holders.any(Member.email == email)


async def memberships_of(session: AsyncSession, *, email: str) -> list[Membership]:
    """Every membership a holder with this e-mail address has, newest first."""
    rows = await session.scalars(
        select(Membership)
        .where(_holds(email))
        .options(
            selectinload(Membership.product),
            selectinload(Membership.holders),
            selectinload(Membership.terms),
        )
        .order_by(Membership.created_at.desc(), Membership.id)
    )
    return list(rows)


async def own_membership(
    session: AsyncSession, *, email: str, membership_id: uuid.UUID
) -> Membership:
    """A membership the signed-in person holds; anyone else's is "not found", not "forbidden"."""
    membership = await load_membership(session, membership_id=membership_id)
    if all(holder.email != email for holder in membership.holders):
        raise NotFound("No such membership.", membership_id=str(membership_id))
    return membership


async def payments_of(session: AsyncSession, *, email: str) -> list[Payment]:
    owned = select(Membership.id).where(_holds(email))
    rows = await session.scalars(
        select(Payment)
        .where(Payment.membership_id.in_(owned))
        .order_by(Payment.created_at.desc(), Payment.id)
    )
    return list(rows)


async def receipts_of(session: AsyncSession, *, email: str) -> list[Receipt]:
    owned = select(Membership.id).where(_holds(email))
    rows = await session.scalars(
        select(Receipt)
        .where(Receipt.membership_id.in_(owned))
        .order_by(Receipt.issued_on.desc(), Receipt.id)
    )
    return list(rows)


async def start_renewal(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    settings: Settings,
    membership: Membership,
    auto_renew: bool,
) -> PurchaseResult:
    """A renewal payment and its checkout; the term is decided when the money arrives, from
    the old end date if that is still within grace (`apply_payment`)."""
    if membership.status not in _RENEWABLE:
        raise MembershipNotRenewable(membership_status=membership.status.value)
    product = membership.product
    if auto_renew and not product.auto_renew_allowed:
        raise AutoRenewNotAllowed()
    if auto_renew:
        membership.auto_renew = True
    return await _checkout(
        session,
        provider=provider,
        settings=settings,
        membership=membership,
        product=product,
        kind=PaymentKind.RENEWAL,
        customer_email=membership.holders[0].email if membership.holders else None,
        auto_renew=auto_renew,
    )


async def stop_auto_renew(
    session: AsyncSession,
    *,
    provider: PaymentProvider,
    membership: Membership,
    actor: Actor = MEMBER_ACTOR,
) -> Membership:
    """Cancel the subscription at the provider; the paid term runs to its end.

    The member's own choice, or the operator's when erasing a holder (membership.erasure).
    """
    if membership.provider_subscription_id and membership.auto_renew:
        await provider.cancel_subscription(membership.provider_subscription_id)
    if membership.auto_renew:
        membership.auto_renew = False
        await audit.record(
            session,
            actor=actor,
            action="membership.auto_renew_off",
            entity_type="membership",
            entity_id=membership.id,
            changes={"auto_renew": [True, False]},
        )
    await session.flush()
    return membership
