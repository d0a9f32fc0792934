-- Development only: production migrations are forward-only.
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS account_webhooks;
DROP TABLE IF EXISTS sealing_salts;
