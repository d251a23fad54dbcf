-- Data-subject requests (R11) find a customer's calls by reference.
CREATE INDEX calls_customer ON calls (customer_ref);
