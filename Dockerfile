# Static musl binary on a distroless, non-root base.
#   docker build -t finetune-operator .
# Where no container engine runs (our CI), `make image` builds the image without one: the same
# build script (scripts/build-musl.sh), then scripts/image.sh puts the binary alone, with this
# file's USER, ENTRYPOINT, CMD and EXPOSE, into an OCI layout (tests/image.rs checks they agree).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/build-musl.sh scripts/
RUN scripts/setup.sh
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# testkit/ is a workspace member (the support library of the tests): cargo reads its manifest,
# the operator does not use it.
COPY testkit ./testkit
RUN scripts/build-musl.sh /out

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/finetune-operator /finetune-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/finetune-operator"]
CMD ["run"]
