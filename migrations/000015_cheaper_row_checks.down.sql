ALTER TABLE ocsp_responses
    DROP CONSTRAINT ocsp_responses_certificate_fkey,
    ADD CONSTRAINT ocsp_responses_serial_fkey FOREIGN KEY (serial) REFERENCES certificates (serial),
    ADD CONSTRAINT ocsp_responses_issuer_id_fkey FOREIGN KEY (issuer_id) REFERENCES issuers (id);

ALTER TABLE certificates
    DROP CONSTRAINT certificates_serial_check,
    ADD CONSTRAINT certificates_serial_check CHECK (serial ~ '^[1-9a-f][0-9a-f]{0,39}$');
