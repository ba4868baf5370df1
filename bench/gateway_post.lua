-- wrk: POST /greeter/hello with a small JSON body (bench/run's gateway row).
wrk.method = "POST"
wrk.body = '{"name":"Ada"}'
wrk.headers["Content-Type"] = "application/json"
