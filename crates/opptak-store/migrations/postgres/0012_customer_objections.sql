-- A customer's objection to KI processing or to analysis (GDPR art. 21;
-- issue 16, section 5), recorded per customer: later calls of the customer
-- start with KI off unless the advisor records new consent in the call
-- (CallStarted.ki_consent_renewed). Holds the pseudonymous reference only.
CREATE TABLE customer_objections (
    customer_ref TEXT NOT NULL,
    kind         TEXT NOT NULL,
    at_us        BIGINT NOT NULL,
    recorded_by  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (customer_ref, kind)
);
