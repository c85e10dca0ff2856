"""Reference panel written like the seed's (Flask + a new PyMySQL connection
per request + the seed's query), for services/benchmarks/run.sh panel to load
next to our frontend. Not part of the product.

Run: PORT=... DB_HOST=... DB_PORT=... DB_USER=... DB_PASSWORD=... DB_NAME=...
     [DB_SSL_CA=ca.pem] services/benchmarks/.venv/bin/python services/benchmarks/flask-reference/app.py
or under gunicorn (services/benchmarks/stack-panel.sh): gunicorn -w4 app:app.
DB_SSL_CA: verify the server against this CA, as the stack's accounts require.
"""

import os

import pymysql
import pymysql.cursors
from flask import Flask, jsonify, render_template_string

app = Flask(__name__)

CITIES = ["Bogotá", "Medellín", "Cali", "Cartagena", "Manizales", "Pereira", "Bucaramanga"]

# The latest reading of each city, one indexed lookup per city, the same
# access path as our frontend: the reference is slower for its architecture,
# not for a worse query.
LATEST_OF_CITY = "SELECT * FROM mediciones WHERE ciudad = %s ORDER BY fecha_registro DESC LIMIT 1"

PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Telemetría</title></head>
<body>
<h1>Telemetría</h1>
<h2>Última lectura por ciudad</h2>
<table>
<tr><th>Ciudad</th><th>Temperatura</th><th>Humedad</th><th>Fecha</th></tr>
{% for row in latest %}<tr><td>{{ row.ciudad }}</td><td>{{ row.temperatura }}</td><td>{{ row.humedad }}</td><td>{{ row.fecha_registro }}</td></tr>
{% endfor %}</table>
<h2>Últimas 15 mediciones</h2>
<table>
<tr><th>ID</th><th>Ciudad</th><th>Temperatura</th><th>Humedad</th><th>Fecha</th></tr>
{% for row in recent %}<tr><td>{{ row.id }}</td><td>{{ row.ciudad }}</td><td>{{ row.temperatura }}</td><td>{{ row.humedad }}</td><td>{{ row.fecha_registro }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def connect():
    # A new connection per request, as the seed's app did.
    return pymysql.connect(
        host=os.environ["DB_HOST"],
        port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"],
        password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"],
        charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
        ssl={"ca": os.environ["DB_SSL_CA"]} if os.environ.get("DB_SSL_CA") else None,
    )


def latest_per_city(cursor):
    rows = []
    for city in CITIES:
        cursor.execute(LATEST_OF_CITY, (city,))
        row = cursor.fetchone()
        if row:
            rows.append(row)
    return rows


@app.route("/")
def index():
    conn = connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT * FROM mediciones ORDER BY id DESC LIMIT 15")
            recent = cursor.fetchall()
            latest = latest_per_city(cursor)
    finally:
        conn.close()
    return render_template_string(PAGE, recent=recent, latest=latest)


@app.route("/api/cities")
def cities():
    conn = connect()
    try:
        with conn.cursor() as cursor:
            latest = latest_per_city(cursor)
    finally:
        conn.close()
    return jsonify([{**row, "fecha_registro": str(row["fecha_registro"])} for row in latest])


if __name__ == "__main__":
    # Flask's own server, threaded (its default), as the seed ran it.
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
