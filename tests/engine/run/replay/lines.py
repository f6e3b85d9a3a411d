"""Access-log lines for the replay tests: AWS's and Apache's documented examples, and lines
written from what the proxy recorded of real clients (``as_alb``, ``as_combined``)."""

from __future__ import annotations

from datetime import UTC, datetime

from pipstorm.infra.proxy.log import RequestRecord

# AWS's documented ALB examples (Elastic Load Balancing guide, "Example log entries").
AWS_HTTP = (
    "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "
    '"GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - '
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
    '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" '
    '0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" '
    "TID_1234abcd5678ef90"
)
AWS_HTTPS = (
    "https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "
    '"GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
    '"Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" '
    '"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" '
    '1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" '
    "TID_1234abcd5678ef90"
)
# The HTTPS example as pip 25.3 downloading a wheel would have made it.
PIP_HTTPS = AWS_HTTPS.replace('"curl/7.46.0"', '"pip/25.3 {\\"ci\\":null}"').replace(
    "https://www.example.com:443/ ",
    "https://www.example.com:443/packages/a-1.0.0-py3-none-any.whl ",
)
# The Apache HTTP Server documentation's Combined Log Format example (nginx's `combined` has the
# same fields).
APACHE_COMBINED = (
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
    '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
)


def iso(ts: float) -> str:
    """An ALB time: ISO 8601, microseconds, Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_alb(record: RequestRecord, host: str, *, shift_s: float = 0.0) -> str:
    """The ALB line the record would have made (quotes in the user agent escaped, as ALB does)."""
    ts = record.ts + shift_s
    status = "-" if record.status is None else str(record.status)
    agent = (record.user_agent or "-").replace('"', '\\"')
    return (
        f"https {iso(ts + record.total_ms / 1000)} app/pypi/50dc6c495c0c9188 {host}:40123 "
        f"10.0.0.1:8080 0.000 {record.total_ms / 1000:.3f} 0.000 {status} {status} 120 "
        f'{record.bytes} "{record.method} https://pypi.example.com:443{record.path} HTTP/1.1" '
        f'"{agent}" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
        "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/pypi/73e2d6bc24d8a067 "
        '"Root=1-58337281-1d84f3d73c47ec4e58577259" "pypi.example.com" "-" '
        f'1 {iso(ts)} "forward" "-" "-" "10.0.0.1:8080" "{status}" "-" "-" TID_1'
    )


def as_combined(record: RequestRecord, host: str, *, shift_s: float = 0.0) -> str:
    """The gunicorn line (quotes left as they are, as gunicorn does) with ``$request_time``."""
    spent = record.total_ms / 1000
    when = datetime.fromtimestamp(record.ts + shift_s + spent, UTC)
    status = "-" if record.status is None else str(record.status)
    return (
        f"{host} - - [{when.strftime('%d/%b/%Y:%H:%M:%S %z')}] "
        f'"{record.method} {record.path} HTTP/1.1" {status} {record.bytes} "-" '
        f'"{record.user_agent or "-"}" {spent:.3f}'
    )
