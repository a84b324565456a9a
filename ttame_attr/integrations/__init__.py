"""Integrations with other frameworks, each behind its optional extra (``ttame_attr.integrations.ray``:
``pip install "ttame-attr[ray]"``)."""

__all__: list[str] = []
