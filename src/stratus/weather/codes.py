"""Short English descriptions of the weather, derived from what stations report.

No installed package carries a weather-code-to-text table, so the tables live here. Every function
is pure; the texts are lowercase and short ("light rain", "overcast clouds"). A function returns
``None`` where its input says nothing about the weather (WMO 00-03, an unobserved TMY2 hour, a
missing cloud cover), so that the caller can fall back to the next source, in this order:
present weather, then cloud cover, then precipitation and visibility.
"""

from __future__ import annotations

__all__ = [
    "describe_cloud_tenths",
    "describe_open_meteo_code",
    "describe_precip_visibility",
    "describe_tmy2_present_weather",
    "describe_wmo_present_weather",
]

# --- WMO code table 4677: present weather reported from a manned station (ww 00-99) -------------
_WMO_4677: dict[int, str] = {
    # 00-03: change of the sky during the past hour, no significant weather -> None (not listed)
    4: "smoke",
    5: "haze",
    6: "dust",  # widespread dust in suspension, not raised by wind at the station
    7: "blowing dust",  # dust or sand raised by wind
    8: "dust whirls",
    9: "dust storm in sight",
    10: "mist",
    11: "patches of shallow fog",
    12: "shallow fog",
    13: "lightning",  # lightning visible, no thunder heard
    14: "virga",  # precipitation in sight, not reaching the ground
    15: "distant precipitation",  # reaching the ground more than 5 km away
    16: "precipitation nearby",  # reaching the ground near, but not at, the station
    17: "thunderstorm",  # thunder heard, no precipitation at the station
    18: "squalls",
    19: "funnel cloud",
    # 20-29: during the preceding hour but not at the time of observation
    20: "recent drizzle",
    21: "recent rain",
    22: "recent snow",
    23: "recent rain and snow",
    24: "recent freezing rain",
    25: "recent shower rain",
    26: "recent shower snow",
    27: "recent hail",
    28: "recent fog",
    29: "recent thunderstorm",
    # 30-39: duststorm, sandstorm, drifting or blowing snow
    30: "dust storm",
    31: "dust storm",
    32: "dust storm",
    33: "severe dust storm",
    34: "severe dust storm",
    35: "severe dust storm",
    36: "drifting snow",
    37: "heavy drifting snow",
    38: "blowing snow",
    39: "heavy blowing snow",
    # 40-49: fog or ice fog at the time of observation
    40: "distant fog",
    41: "patchy fog",
    **dict.fromkeys(range(42, 48), "fog"),
    48: "freezing fog",  # fog depositing rime
    49: "freezing fog",
    # 50-59: drizzle
    50: "light drizzle",
    51: "light drizzle",
    52: "moderate drizzle",
    53: "moderate drizzle",
    54: "heavy drizzle",
    55: "heavy drizzle",
    56: "light freezing drizzle",
    57: "freezing drizzle",
    58: "light drizzle and rain",
    59: "drizzle and rain",
    # 60-69: rain
    60: "light rain",
    61: "light rain",
    62: "moderate rain",
    63: "moderate rain",
    64: "heavy rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "freezing rain",
    68: "light rain and snow",
    69: "rain and snow",
    # 70-79: solid precipitation not in showers
    70: "light snow",
    71: "light snow",
    72: "moderate snow",
    73: "moderate snow",
    74: "heavy snow",
    75: "heavy snow",
    76: "ice crystals",  # diamond dust
    77: "snow grains",
    78: "snow crystals",
    79: "ice pellets",
    # 80-99: showers, and thunderstorms
    80: "shower rain",
    81: "heavy shower rain",
    82: "violent shower rain",
    83: "light shower rain and snow",
    84: "heavy shower rain and snow",
    85: "light shower snow",
    86: "heavy shower snow",
    87: "light shower snow pellets",
    88: "heavy shower snow pellets",
    89: "light shower hail",
    90: "heavy shower hail",
    91: "light rain after thunderstorm",
    92: "rain after thunderstorm",
    93: "light snow after thunderstorm",
    94: "snow after thunderstorm",
    95: "thunderstorm",
    96: "thunderstorm with hail",
    97: "heavy thunderstorm",
    98: "thunderstorm with dust storm",
    99: "heavy thunderstorm with hail",
}


def describe_wmo_present_weather(code: int) -> str | None:
    """WMO 4677 present-weather code (00-99) as text.

    00-03 only say how the sky changed and report no significant weather: ``None``, so the caller
    falls back to cloud cover. Raises ``ValueError`` for a code outside 00-99.
    """
    if not 0 <= code <= 99:
        raise ValueError(f"WMO present-weather code must be 0-99, got {code}")
    return _WMO_4677.get(code)


# --- Open-Meteo's `weather_code` (a subset of WMO 4677 used by its forecast/archive API) ---------
_OPEN_METEO: dict[int, str] = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "moderate drizzle",
    55: "dense drizzle",
    56: "light freezing drizzle",
    57: "dense freezing drizzle",
    61: "slight rain",
    63: "moderate rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "heavy freezing rain",
    71: "slight snow fall",
    73: "moderate snow fall",
    75: "heavy snow fall",
    77: "snow grains",
    80: "slight rain showers",
    81: "moderate rain showers",
    82: "violent rain showers",
    85: "slight snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with slight hail",
    99: "thunderstorm with heavy hail",
}


def describe_open_meteo_code(code: int) -> str | None:
    """Open-Meteo ``weather_code`` as text; ``None`` for a code Open-Meteo does not define."""
    return _OPEN_METEO.get(code)


# --- cloud cover --------------------------------------------------------------------------------
def describe_cloud_tenths(tenths: int) -> str | None:
    """Total sky cover in tenths (0-10) as text; ``None`` outside 0-10 (missing, e.g. 99)."""
    if tenths == 0:
        return "clear sky"
    if 1 <= tenths <= 2:
        return "few clouds"
    if 3 <= tenths <= 5:
        return "scattered clouds"
    if 6 <= tenths <= 8:
        return "broken clouds"
    if 9 <= tenths <= 10:
        return "overcast clouds"
    return None


# --- precipitation and visibility, for stations that report neither weather nor cloud -----------
LIGHT_MAX_MM_PER_H = 2.5
MODERATE_MAX_MM_PER_H = 7.6
FOG_BELOW_KM = 1.0
MIST_BELOW_KM = 5.0


def describe_precip_visibility(
    precip_mm_per_h: float | None, visibility_km: float | None, temp_c: float | None
) -> str:
    """Describe an hour from its precipitation, else its visibility.

    Precipitation above zero: light up to 2.5 mm/h, moderate up to 7.6 mm/h, heavy above; snow
    instead of rain at or below 0 °C (rain when the temperature is unknown). Otherwise visibility
    below 1 km is fog and below 5 km mist; otherwise "no significant weather".
    """
    if precip_mm_per_h is not None and precip_mm_per_h > 0:
        kind = "snow" if temp_c is not None and temp_c <= 0 else "rain"
        if precip_mm_per_h <= LIGHT_MAX_MM_PER_H:
            intensity = "light"
        elif precip_mm_per_h <= MODERATE_MAX_MM_PER_H:
            intensity = "moderate"
        else:
            intensity = "heavy"
        return f"{intensity} {kind}"
    if visibility_km is not None and visibility_km >= 0:
        if visibility_km < FOG_BELOW_KM:
            return "fog"
        if visibility_km < MIST_BELOW_KM:
            return "mist"
    return "no significant weather"


# --- TMY2 / SAMSON present weather --------------------------------------------------------------
# The TMY2 field is 10 characters: an observation indicator (0 observed, 9 not observed or
# missing) and nine digits, one per group of phenomena; 9 in a group means none (or unknown).
# Listed in the order the description prefers them: storms, precipitation, then obscurations.
_TMY2_GROUPS: tuple[tuple[int, dict[str, str]], ...] = (
    (
        1,  # thunderstorm, tornado or squall
        {
            "0": "thunderstorm",
            "1": "heavy thunderstorm",
            "2": "tornado or waterspout",
            "4": "squalls",
            "6": "waterspout",
            "7": "funnel cloud",
            "8": "tornado",
        },
    ),
    (
        2,  # rain, rain showers or freezing rain
        {
            "0": "light rain",
            "1": "moderate rain",
            "2": "heavy rain",
            "3": "light shower rain",
            "4": "shower rain",
            "5": "heavy shower rain",
            "6": "light freezing rain",
            "7": "freezing rain",
            "8": "heavy freezing rain",
        },
    ),
    (
        3,  # rain squalls, drizzle or freezing drizzle
        {
            "0": "light rain squalls",
            "1": "rain squalls",
            "3": "light drizzle",
            "4": "moderate drizzle",
            "5": "heavy drizzle",
            "6": "light freezing drizzle",
            "7": "freezing drizzle",
            "8": "heavy freezing drizzle",
        },
    ),
    (
        4,  # snow, snow pellets or ice crystals
        {
            "0": "light snow",
            "1": "moderate snow",
            "2": "heavy snow",
            "3": "light snow pellets",
            "4": "snow pellets",
            "5": "heavy snow pellets",
            "6": "light ice crystals",
            "7": "ice crystals",
            "8": "heavy ice crystals",
        },
    ),
    (
        5,  # snow showers, snow squalls or snow grains
        {
            "0": "light shower snow",
            "1": "shower snow",
            "2": "heavy shower snow",
            "3": "light snow squalls",
            "4": "snow squalls",
            "5": "heavy snow squalls",
            "6": "light snow grains",
            "7": "snow grains",
        },
    ),
    (
        6,  # sleet (ice pellet) showers or hail
        {
            "0": "light shower ice pellets",
            "1": "shower ice pellets",
            "2": "heavy shower ice pellets",
            "4": "hail",
        },
    ),
    (
        9,  # ice pellets
        {"0": "light ice pellets", "1": "ice pellets", "2": "heavy ice pellets"},
    ),
    (
        7,  # fog, blowing dust or blowing sand
        {
            "0": "fog",
            "1": "ice fog",
            "2": "ground fog",
            "3": "blowing dust",
            "4": "blowing sand",
            "5": "heavy fog",
            "6": "glaze",
            "7": "heavy ice fog",
            "8": "heavy ground fog",
        },
    ),
    (
        8,  # smoke, haze, blowing snow, blowing spray or dust
        {
            "0": "smoke",
            "1": "haze",
            "2": "smoke and haze",
            "3": "dust",
            "4": "blowing snow",
            "5": "blowing spray",
            "6": "dust storm",
            "7": "volcanic ash",
        },
    ),
)


def describe_tmy2_present_weather(code: str) -> str | None:
    """TMY2 present-weather field (10 characters, leading zeros kept) as text.

    ``None`` when the hour was not observed (indicator 9), the field is malformed, or no group
    reports a phenomenon; the caller then falls back to cloud cover. When several groups report
    weather the most significant wins: storms, then precipitation, then fog, then smoke or haze.
    """
    if len(code) != 10 or not code.isdigit() or code[0] != "0":
        return None
    for position, meanings in _TMY2_GROUPS:
        text = meanings.get(code[position])
        if text is not None:
            return text
    return None
