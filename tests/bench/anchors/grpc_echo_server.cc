// grpc_echo_server: the gRPC anchor. A C++ gRPC synchronous server
// (Debian's libgrpc++) serving benchecho.v1.Testing: Echo returns the bytes
// it got, Sleep sleeps in the handler thread. gRPC's sync server runs each
// call on a thread of its own pool, which grows as calls wait, so 32
// concurrent Sleep(10 ms) calls run in parallel, as on hoteld --workers 64.
//
//   grpc_echo_server --port N [--max-threads N]
//
// Prints "ready" once it serves; SIGINT or SIGTERM stop it (exit 0).
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "bench_echo.grpc.pb.h"

namespace {

class TestingImpl final : public benchecho::v1::Testing::Service {
	grpc::Status Echo(grpc::ServerContext *,
	    const benchecho::v1::EchoRequest *req,
	    benchecho::v1::EchoResponse *resp) override
	{
		resp->set_payload(req->payload());
		return grpc::Status::OK;
	}

	grpc::Status Sleep(grpc::ServerContext *,
	    const benchecho::v1::SleepRequest *req,
	    benchecho::v1::SleepResponse *resp) override
	{
		auto start = std::chrono::steady_clock::now();
		std::this_thread::sleep_for(std::chrono::milliseconds(req->ms()));
		auto slept = std::chrono::steady_clock::now() - start;
		resp->set_slept_us(
		    std::chrono::duration_cast<std::chrono::microseconds>(slept)
		        .count());
		return grpc::Status::OK;
	}
};

} // namespace

int
main(int argc, char **argv)
{
	int port        = 0;
	int max_threads = 0;

	for (int i = 1; i < argc; i++) {
		if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			port = std::atoi(argv[++i]);
		} else if (std::strcmp(argv[i], "--max-threads") == 0
		    && i + 1 < argc) {
			max_threads = std::atoi(argv[++i]);
		} else {
			std::fprintf(stderr,
			    "usage: grpc_echo_server --port N "
			    "[--max-threads N]\n");
			return 2;
		}
	}
	if (port <= 0 || port > 65535) {
		std::fprintf(stderr, "grpc_echo_server: need --port 1..65535\n");
		return 2;
	}

	// Only main takes the stop signals: gRPC's threads inherit the mask.
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, nullptr);

	TestingImpl         service;
	grpc::ServerBuilder builder;
	std::string addr = "127.0.0.1:" + std::to_string(port);
	builder.AddListeningPort(addr, grpc::InsecureServerCredentials());
	builder.RegisterService(&service);
	builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
	builder.SetMaxSendMessageSize(64 * 1024 * 1024);
	if (max_threads > 0) {
		grpc::ResourceQuota quota("bench");
		quota.SetMaxThreads(max_threads);
		builder.SetResourceQuota(quota);
	}
	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server) {
		std::fprintf(stderr, "grpc_echo_server: cannot listen on %s\n",
		    addr.c_str());
		return 2;
	}
	std::printf("ready\n");
	std::fflush(stdout);

	int sig;
	sigwait(&stop, &sig);
	server->Shutdown(std::chrono::system_clock::now()
	    + std::chrono::seconds(2));
	return 0;
}
