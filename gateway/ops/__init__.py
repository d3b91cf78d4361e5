"""Operations: doctor, TLS, association policy, metrics, logging."""
