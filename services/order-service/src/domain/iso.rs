//! ISO code lists the order API validates against: ISO 4217 active currency
//! codes and ISO 3166-1 alpha-2 country codes (officially assigned).

/// ISO 4217 active currency codes (funds and precious-metal codes excluded).
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN \
BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ \
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD \
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR \
RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH \
UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// ISO 3166-1 alpha-2 officially assigned country codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS \
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK \
FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM \
JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS \
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM \
US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn listed(list: &str, code: &str) -> bool {
    code.bytes().all(|b| b.is_ascii_uppercase()) && list.split_ascii_whitespace().any(|c| c == code)
}

/// Is `code` an active ISO 4217 currency code (upper case)?
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && listed(CURRENCIES, code)
}

/// Every active ISO 4217 currency code (for the OpenAPI document).
pub fn currencies() -> impl Iterator<Item = &'static str> {
    CURRENCIES.split_ascii_whitespace()
}

/// Every ISO 3166-1 alpha-2 country code (for the OpenAPI document).
pub fn countries() -> impl Iterator<Item = &'static str> {
    COUNTRIES.split_ascii_whitespace()
}

/// Is `code` an ISO 3166-1 alpha-2 country code (upper case)?
pub fn is_country(code: &str) -> bool {
    code.len() == 2 && listed(COUNTRIES, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_real_codes_only() {
        assert!(is_currency("EUR") && is_currency("JPY") && is_currency("GBP"));
        assert!(!is_currency("eur") && !is_currency("XXX") && !is_currency("EURO"));
        assert!(is_country("GB") && is_country("DE") && is_country("US"));
        assert!(!is_country("UK") && !is_country("gb") && !is_country("GBR") && !is_country("ZZ"));
        assert_eq!(CURRENCIES.split_ascii_whitespace().count(), 158);
        assert_eq!(COUNTRIES.split_ascii_whitespace().count(), 249);
    }
}
