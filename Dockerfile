# Builds and runs `ilgpullm serve`. Microsoft's .NET 10 SDK image builds it and its ASP.NET Core 10
# runtime image runs it; name both (as your registry spells them) with --build-arg:
#
#   docker build --build-arg SDK_IMAGE=<dotnet sdk 10.0 image> --build-arg RUNTIME_IMAGE=<aspnet 10.0 image> -t ilgpullm .
#   docker run -p 8080:8080 -v /path/to/models:/models:ro ilgpullm serve -m /models/model.gguf --host 0.0.0.0
#
# Without -m it serves the built-in stories260K. docs/SERVING.md has the Kubernetes side.
ARG SDK_IMAGE
ARG RUNTIME_IMAGE

FROM ${SDK_IMAGE} AS build
WORKDIR /src
COPY Directory.Build.props Directory.Packages.props README.md LICENSE ./
COPY src/ src/
RUN dotnet publish src/Cli -c Release -o /app

FROM ${RUNTIME_IMAGE}
WORKDIR /app
COPY --from=build /app ./
# Not root: the server needs nothing a user lacks.
USER 1000
# Kubernetes probes /health over HTTP (the runtime image has no curl for a HEALTHCHECK).
EXPOSE 8080
ENTRYPOINT ["dotnet", "/app/ilgpullm.dll"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
