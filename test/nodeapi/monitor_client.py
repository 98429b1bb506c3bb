"""The network monitor's view of a compute node, with the client it uses (aiohttp).

Follows aleph-scoring's get_crn_metrics rules (aleph_scoring/metrics/__init__.py):
the version is the first non-empty capture of ^aleph-vm/(.*)$ over every Server value
of GET <url> (raise_for_status first); about/login must answer 401; vm/<diagnostic>
must answer 200 within 10 s; status/check/fastapi 200 within 20 s. Written for the
tests of aleph-edge; prints one JSON object.

usage: monitor_client.py URL CAFILE DIAGNOSTIC_HASH
"""

import asyncio
import json
import re
import ssl
import sys
import time

import aiohttp


async def version_of(session, url):
    async with session.get(url) as resp:
        resp.raise_for_status()
        for server in resp.headers.getall("Server", []):
            found = re.findall(r"^aleph-vm/(.*)$", server)
            if found and found[0]:
                return found[0], resp.headers.getall("Server", [])
        return None, resp.headers.getall("Server", [])


async def answers(session, url, status, timeout):
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url) as resp:
                await resp.read()
                return resp.status == status, resp.status, time.monotonic() - started
    except (aiohttp.ClientError, TimeoutError) as error:
        return False, repr(error), time.monotonic() - started


async def main(url, cafile, diagnostic):
    context = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        version, servers = await version_of(session, url)
        login = await answers(session, f"{url}about/login", 401, 10)
        vm = await answers(session, f"{url}vm/{diagnostic}", 200, 10)
        fastapi = await answers(session, f"{url}status/check/fastapi", 200, 20)
    print(json.dumps({"version": version, "servers": servers, "login": login, "vm": vm, "fastapi": fastapi}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
