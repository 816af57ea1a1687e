"""The FINT source plug-in (FINT information model 3.x over OAuth2 and HAL+JSON).

Modules: ``client`` (OAuth2 password grant and refresh, retries, paging), ``cache`` (the local
cache of entries for ``sinceTimeStamp`` reads), ``mapping``/``mapping_groups`` (FINT resources
to the canonical snapshot, pure) and ``source`` (``FintSource``: the plug-in itself).

Sources for the contract, from FINTLabs' public repositories:
- model: FINTLabs/fint-information-model-java (README "Version v3.18.0", gradle.properties
  3.21.x): the resource classes under fint-utdanning-resource-model-java (elev/Elev,
  Elevforhold, Basisgruppe, Basisgruppemedlemskap, Kontaktlarergruppe(+medlemskap),
  Skoleressurs, Undervisningsforhold; timeplan/Undervisningsgruppe(+medlemskap), Fag;
  utdanningsprogram/Skole, Arstrinn, Programomrade, Programomrademedlemskap,
  Utdanningsprogram), fint-felles-resource-model-java (Person, Kontaktperson, Enhet, Aktor)
  and fint-administrasjon-resource-model-java (personal/Personalressurs, Arbeidsforhold;
  organisasjon/Organisasjonselement);
- collection envelope ``_embedded._entries`` and ``total_items``: FINTLabs/fint-model-resource
  AbstractCollectionResources; ``offset``/``size`` paging links: FINTLabs/fint-core-consumer
  LinkPaginator and FintResourcesPage;
- query parameters ``size``, ``offset``, ``sinceTimeStamp`` (epoch ms) and the
  ``/last-updated`` (``{"lastUpdated"}``) and ``/cache/size`` (``{"size"}``) endpoints:
  FINTLabs/fint-core-consumer ResourceController, EndpointsConstants and the dto package;
- OAuth2: password grant with client_id, client_secret, username, password and scope
  ``fint-client`` at https://idp.felleskomponent.no/nidp/oauth/nam/token (FINTLabs/fint-token
  constants.go, FINTLabs/fint-oauth-consumer-client-sample README).
Not confirmed there, chosen as the most plausible: the refresh-token grant (used when the
token endpoint gives a refresh token, else a new password grant), that ``sinceTimeStamp``
returns entries changed strictly after it, and that a Date is serialised as a UTC instant.
"""

from sources.fint.source import FintSource

__all__ = ["FintSource"]
