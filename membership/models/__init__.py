"""The ORM models of the whole domain; importing this package registers every table."""

from membership.models.audit import AuditEntry
from membership.models.base import Base
from membership.models.cards import LIVE_CARD_STATUSES, Card, CardRevocation, CardStatus
from membership.models.checkins import Checkin, CheckinResult
from membership.models.devices import Device
from membership.models.idempotency import IdempotencyKey
from membership.models.institutions import (
    ClearingModel,
    ClearingPolicy,
    Institution,
    InstitutionTariff,
    Venue,
)
from membership.models.member_sessions import MemberSession, MemberSignInLink
from membership.models.members import Member, new_visitor_key
from membership.models.memberships import (
    Membership,
    MembershipStatus,
    MembershipTerm,
    TermKind,
    TermStatus,
    membership_holders,
)
from membership.models.outbox import OutboxEmail
from membership.models.payments import Payment, PaymentKind, PaymentStatus, WebhookEvent
from membership.models.periods import (
    PayoutClosing,
    PayoutClosingLine,
    PeriodKind,
    PeriodPair,
    PeriodVisitors,
    ReportPeriod,
    StoredReport,
    StoredReportKind,
)
from membership.models.products import Product, ProductKind, product_institutions
from membership.models.receipts import Receipt
from membership.models.rollups import NO_PRODUCT, InstitutionDayCount
from membership.models.staff import StaffRole, StaffToken, StaffUser
from membership.models.visitors import InstitutionVisitor

__all__ = [
    "LIVE_CARD_STATUSES",
    "NO_PRODUCT",
    "AuditEntry",
    "Base",
    "Card",
    "CardRevocation",
    "CardStatus",
    "Checkin",
    "CheckinResult",
    "ClearingModel",
    "ClearingPolicy",
    "Device",
    "IdempotencyKey",
    "Institution",
    "InstitutionDayCount",
    "InstitutionTariff",
    "InstitutionVisitor",
    "Member",
    "MemberSession",
    "MemberSignInLink",
    "Membership",
    "MembershipStatus",
    "MembershipTerm",
    "OutboxEmail",
    "Payment",
    "PaymentKind",
    "PaymentStatus",
    "PayoutClosing",
    "PayoutClosingLine",
    "PeriodKind",
    "PeriodPair",
    "PeriodVisitors",
    "Product",
    "ProductKind",
    "Receipt",
    "ReportPeriod",
    "StaffRole",
    "StaffToken",
    "StaffUser",
    "StoredReport",
    "StoredReportKind",
    "TermKind",
    "TermStatus",
    "Venue",
    "WebhookEvent",
    "membership_holders",
    "new_visitor_key",
    "product_institutions",
]
