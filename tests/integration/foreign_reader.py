#!/usr/bin/python3
"""foreign_reader.py — read an escqrs topic with tools escqrs did not write.

Consumes COUNT records from TOPIC with Python confluent-kafka (librdkafka's
Python binding), fetches each record's writer schema from the registry by the
id in bytes 1..4 (plain HTTP, as docs/wire-format.md describes) and decodes
the body with Apache Avro's Python library.  Prints one JSON object per
record: key, headers, schema_id, value.  Used by integration test 0101; runs
with Debian's python3-confluent-kafka and python3-avro (scripts/install-deps).

  foreign_reader.py BOOTSTRAP REGISTRY_URL TOPIC COUNT
"""
import datetime
import io
import json
import struct
import sys
import urllib.request

import avro.io
import avro.schema
from confluent_kafka import Consumer


def main():
    bootstrap, registry, topic, count = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3], int(sys.argv[4])
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "foreign-reader-" + topic,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    schemas = {}
    seen = 0
    polls = 0
    while seen < count and polls < 300:
        polls += 1
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        raw = msg.value()
        magic, schema_id = struct.unpack(">bI", raw[:5])
        if magic != 0:
            raise SystemExit("record at offset %d: magic byte %d" % (msg.offset(), magic))
        if schema_id not in schemas:
            with urllib.request.urlopen("%s/schemas/ids/%d" % (registry, schema_id), timeout=10) as r:
                schemas[schema_id] = avro.schema.parse(json.load(r)["schema"])
        reader = avro.io.DatumReader(schemas[schema_id])
        value = reader.read(avro.io.BinaryDecoder(io.BytesIO(raw[5:])))
        print(json.dumps({
            "key": msg.key().decode("utf-8"),
            "headers": {k: v.decode("utf-8") for k, v in (msg.headers() or [])},
            "schema_id": schema_id,
            "value": value,
        }, default=lambda o: int(o.timestamp() * 1000) if isinstance(o, datetime.datetime) else str(o)))
        seen += 1
    consumer.close()
    if seen < count:
        raise SystemExit("read %d of %d records from %s" % (seen, count, topic))


if __name__ == "__main__":
    main()
