"""One run of setup mode: the DNS and HTTP servers, the routes, the deadline.

Routes (anything else, and any request for another host name, is answered
with a redirect to the portal's root, which is what makes the OS
connectivity probes open the captive-portal sheet by themselves):

    GET/HEAD /      the setup form (the networks are scanned for each view)
    POST /save      validate, try the network, show the outcome

The form carries a random token made for this session (CSRF): a page from
elsewhere cannot submit settings through the user's browser.
"""

import binascii
import select

from lcm_device.compat import collect, const, random_bytes, ticks_diff, ticks_ms
from lcm_device.log import log
from lcm_device.portal import page
from lcm_device.portal.dns import DnsServer
from lcm_device.portal.server import HttpServer

_TICK_MS = const(250)
_FORM_TYPE = "application/x-www-form-urlencoded"


def same(a, b):
    """Compare without stopping at the first difference (the token is a secret)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


class Session:
    def __init__(self, hal, cfg, sta, name, address, join, save, retry):
        self.hal = hal
        self.cfg = cfg
        self.sta = sta
        self.name = name
        self.address = address
        self.join = join
        self.save = save
        self.retry = retry
        self.token = binascii.hexlify(random_bytes(16)).decode()
        self.host = address
        self.done = False

    def run(self, bind, http_port, dns_port, timeout_ms):
        """Serve until connected (True) or `timeout_ms` passed (False)."""
        self.host = self.address if http_port == 80 else self.address + ":" + str(http_port)
        dns = DnsServer(bind, dns_port, self.address)
        try:
            http = HttpServer(bind, http_port, dns)  # DNS answered while HTTP waits
        except OSError:
            dns.close()
            raise
        log("portal: http://" + self.host + "/ dns " + self.address + " port " + str(dns_port))
        self.dns = dns
        self.dns_poller = select.poll()
        self.dns_poller.register(dns.sock, select.POLLIN)
        poller = select.poll()
        poller.register(dns.sock, select.POLLIN)
        poller.register(http.sock, select.POLLIN)
        start = ticks_ms()
        try:
            while not self.done:
                if ticks_diff(ticks_ms(), start) >= timeout_ms:
                    return False
                if self.retry is not None and self.retry.poll():
                    log("portal: the stored network is back")
                    return True
                if poller.poll(_TICK_MS):
                    # Both sockets are non-blocking: each serves what is waiting, if anything.
                    dns.handle()
                    http.handle(self.route)
                    collect()
            return True
        finally:
            dns.close()
            http.close()

    def answer_dns(self, ms):
        """Wait up to `ms` answering DNS: trying a network takes up to 20 s, and name
        lookups (the phone's own captive-portal checks among them) must not wait."""
        if self.dns_poller.poll(ms):
            self.dns.handle()

    def route(self, req, out):
        if req.host and req.host != self.host:
            out.redirect("http://" + self.host + "/")
        elif req.path == "/" and req.method != "POST":
            self.form(out)
        elif req.path == "/save" and req.method == "POST":
            self.submit(req, out)
        else:
            out.redirect("http://" + self.host + "/")

    def scan(self):
        try:
            return self.sta.scan()
        except OSError as e:
            log("portal: scan failed: " + str(e))
            return []

    def form(self, out, status=200, fields=None, error=None):
        collect()  # the scan's list wants one free block: start from a collected heap
        scan = self.scan()
        out.start(status)
        page.form_page(out, self.name, scan, self.token, self.cfg, fields, error)

    def submit(self, req, out):
        from lcm_device.portal import form

        if req.ctype.split(";")[0].strip() != _FORM_TYPE:  # the media type, parameters aside
            out.start(415)
            page.message_page(out, "Not a form", "The request was not sent by the setup form.")
            return
        try:
            fields = form.parse(req.body)
        except form.FormError as e:
            self.form(out, 400, None, e.message)
            return
        if not same(fields.get("t", ""), self.token):
            out.start(403)
            page.message_page(
                out,
                "Form expired",
                "This page is from an earlier setup session. Load it again and resubmit.",
            )
            return
        try:
            ssid, password, settings = form.validate(fields, self.cfg)
        except form.FormError as e:
            self.form(out, 400, fields, e.message)
            return
        fields = None
        collect()
        log("portal: trying network " + repr(ssid))
        reason = self.join(self.sta, ssid, password, pause=self.answer_dns)
        if reason is None:
            try:
                self.save(settings)
            except OSError as e:
                reason = "connected, but the settings could not be saved (" + str(e) + ")"
        if reason is None:
            log("portal: joined " + repr(ssid) + "; settings saved")
            self.done = True
        else:
            log("portal: could not join " + repr(ssid) + ": " + reason)
            if self.retry is not None:
                self.retry.restart()
        out.start(200)
        page.result_page(out, self.name, ssid, reason)
