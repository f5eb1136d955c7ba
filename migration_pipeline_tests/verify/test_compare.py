"""``compare``: a payload against amoCRM's rendering of the record it created."""

from __future__ import annotations

from migration_pipeline.verify.readback import compare

PAYLOAD = {
    "name": "Поставка",
    "price": 1200,
    "status_id": 142,
    "responsible_user_id": 7,
    "custom_fields_values": [
        {"field_id": 1, "values": [{"value": "1042"}]},
        {"field_id": 2, "values": [{"value": 12.5}]},
        {"field_id": 3, "values": [{"enum_id": 30}, {"enum_id": 31}]},
        {"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]},
    ],
    "_embedded": {
        "tags": [{"name": "VIP"}],
        "contacts": [{"id": 5, "is_main": False}, {"id": 6, "is_main": False}],
        "companies": [{"id": 9}],
    },
}


def rendered(**changes: object) -> dict:
    """The lead as amoCRM renders it: typed values, enums with their labels, field codes."""
    record = {
        "id": 100,
        "name": "Поставка",
        "price": 1200,
        "status_id": 142,
        "responsible_user_id": 7,
        "created_at": 1_700_000_000,  # not in the payload: amoCRM's own, not compared
        "custom_fields_values": [
            {"field_id": 1, "field_type": "text", "values": [{"value": "1042"}]},
            {"field_id": 2, "field_type": "numeric", "values": [{"value": "12.5"}]},
            {
                "field_id": 3,
                "field_type": "multiselect",
                "values": [{"value": "b", "enum_id": 31}, {"value": "a", "enum_id": 30}],
            },
            {
                "field_id": 4,
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": [{"value": "+79161234567", "enum_code": "WORK", "enum_id": 1}],
            },
        ],
        "_embedded": {
            "tags": [{"id": 1, "name": "VIP"}],
            "contacts": [{"id": 6, "is_main": True}, {"id": 5, "is_main": False}],
            "companies": [{"id": 9}],
        },
    }
    record.update(changes)
    return record


def test_the_same_record_in_amocrms_types_and_order_matches() -> None:
    # Numbers as text, enums by id in another order, the phone by its code, and a main contact
    # amoCRM picked itself (the plan named none): no difference.
    assert compare("lead", "1", 100, PAYLOAD, rendered()) == []


def test_each_difference_names_the_field_and_both_values() -> None:
    changed = rendered(price=1300, _embedded={"tags": [], "contacts": [], "companies": []})
    found = {(m.field, m.expected, m.actual) for m in compare("lead", "1", 100, PAYLOAD, changed)}
    assert found == {
        ("price", "1200", "1300"),
        ("tags", '["VIP"]', "[]"),
        ("company", "[9]", "[]"),
        ("contacts (id, is main)", "[[5, false], [6, false]]", "[]"),
    }


def test_a_changed_custom_value_and_a_named_main_contact_are_compared() -> None:
    payload = {
        **PAYLOAD,
        "_embedded": {**PAYLOAD["_embedded"], "contacts": [{"id": 5, "is_main": True}]},
    }
    record = rendered()
    record["custom_fields_values"][1]["values"] = [{"value": "12.6"}]
    record["_embedded"]["contacts"] = [{"id": 5, "is_main": False}, {"id": 6, "is_main": True}]
    found = {m.field for m in compare("lead", "1", 100, payload, record)}
    assert found == {"custom field 2", "contacts (id, is main)"}
