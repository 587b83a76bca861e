# The abdr worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models models
COPY workflows workflows
COPY activities activities
COPY drivers drivers
COPY starter starter
COPY worker.py ./
RUN pip install --no-cache-dir .
CMD ["python", "worker.py"]
