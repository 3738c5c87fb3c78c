# flora-gate as a container: the release binary on a distroless base, run
# as a non-root user. For the Kubernetes Job in deploy/kubernetes/.
#
#   docker build -t flora-gate .
#   docker run --rm flora-gate --version
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/flora-gate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flora-gate /usr/local/bin/flora-gate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flora-gate"]
